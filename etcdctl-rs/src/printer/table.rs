//! `-w table`: olekukonko/tablewriter as etcdctl configures it (right-aligned cells, centred upper-case
//! headers), for member list and the endpoint commands only.

use raftcd_proto::etcdserverpb::MemberListResponse;

use super::{endpoint_hashkv_table, endpoint_health_table, endpoint_status_table, member_list_table};
use super::{EpHashKv, EpHealth, EpStatus, Printer};
use crate::exit::{CliResult, Out};

/// The table printer.
#[derive(Debug, Default)]
pub struct TablePrinter;

/// tablewriter's `Title`: `_` to space, trimmed, upper case.
fn title(h: &str) -> String {
    let t = h.replace('_', " ");
    let t = t.trim();
    if t.is_empty() && !h.is_empty() {
        return " ".into();
    }
    t.to_uppercase()
}

/// Renders a table the way tablewriter does with etcdctl's settings.
pub fn render(hdr: &[&str], rows: &[Vec<String>]) -> String {
    let heads: Vec<String> = hdr.iter().map(|h| title(h)).collect();
    let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let sep: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    };
    let mut out = String::new();
    out.push_str(&sep);
    out.push('\n');
    out.push('|');
    for (h, w) in heads.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push(' ');
        out.push_str(&" ".repeat(left));
        out.push_str(h);
        out.push_str(&" ".repeat(gap - left));
        out.push_str(" |");
    }
    out.push('\n');
    out.push_str(&sep);
    out.push('\n');
    for row in rows {
        out.push('|');
        for (c, w) in row.iter().zip(&widths) {
            out.push(' ');
            out.push_str(&" ".repeat(w - c.chars().count()));
            out.push_str(c);
            out.push_str(" |");
        }
        out.push('\n');
    }
    out.push_str(&sep);
    out.push('\n');
    out
}

impl Printer for TablePrinter {
    fn name(&self) -> &'static str {
        "table"
    }

    fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> CliResult {
        let (h, rows) = member_list_table(r);
        o.raw(render(&h, &rows).as_bytes());
        Ok(())
    }

    fn endpoint_health(&self, o: &mut Out, list: &[EpHealth]) -> CliResult {
        let (h, rows) = endpoint_health_table(list);
        o.raw(render(&h, &rows).as_bytes());
        Ok(())
    }

    fn endpoint_status(&self, o: &mut Out, list: &[EpStatus]) -> CliResult {
        let (h, rows) = endpoint_status_table(list);
        o.raw(render(&h, &rows).as_bytes());
        Ok(())
    }

    fn endpoint_hashkv(&self, o: &mut Out, list: &[EpHashKv]) -> CliResult {
        let (h, rows) = endpoint_hashkv_table(list);
        o.raw(render(&h, &rows).as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashkv_table_matches_etcdctl() {
        let t = render(&["endpoint", "hash"], &[vec!["127.0.0.1:23790".into(), "2805210946".into()]]);
        assert_eq!(
            t,
            "+-----------------+------------+\n\
             |    ENDPOINT     |    HASH    |\n\
             +-----------------+------------+\n\
             | 127.0.0.1:23790 | 2805210946 |\n\
             +-----------------+------------+\n"
        );
    }

    #[test]
    fn get_is_unsupported() {
        let (mut o, _, _) = crate::exit::capture::out();
        let e = TablePrinter.get(&mut o, &Default::default()).unwrap_err();
        assert_eq!(e, crate::exit::CliError::new(4, "table not supported as output format"));
    }
}
