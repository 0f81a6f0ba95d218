//! The one error type of the server and its one mapping to gRPC status, with etcd's exact codes and messages
//! (clients such as clientv3 and kube-apiserver match on the message text).

use tonic::{Code, Status};

/// Everything a request can fail with. Each variant's message is etcd's, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Reading or watching below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// Reading or compacting above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The NOSPACE alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Empty key in a put/range/delete/compare.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// ignore_value / ignore_lease on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// ignore_value together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// ignore_lease together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More than --max-txn-ops operations in one branch.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Two writes of the same key in one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The request exceeds --max-request-bytes.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A lease id that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// LeaseGrant with an id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// LeaseGrant with a TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// No leader is known.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// An operation that only the leader can do.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Leadership changed while the request was in flight; it may or may not have been applied.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request did not finish in time; it may or may not have been applied.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A membership change that would lose quorum.
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    /// The member's data failed a consistency check.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// MemberPromote of a voter.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// MemberPromote of a learner that lags behind.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// More than one learner.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// A request a learner cannot serve.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// MemberRemove/Update/Promote of an unknown member.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// MemberAdd with peer URLs already in use.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// MemberAdd with the id of a member that was removed.
    #[error("etcdserver: ID removed")]
    MemberIdRemoved,
    /// MoveLeader to a member that is not a voter of the cluster.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// Authenticate or an auth-only request while authentication is off.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// Wrong user name or password (or a user without password).
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// A request without user while authentication is on, or an empty user name.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// UserAdd of an existing user.
    #[error("etcdserver: user name already exists")]
    UserExists,
    /// A user that does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd with an empty name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// RoleAdd of an existing role.
    #[error("etcdserver: role name already exists")]
    RoleExists,
    /// A role that does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// UserRevokeRole of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// AuthEnable without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while `root` lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// Removing `root` (user, role or grant) while authentication is on.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The auth store changed between the check at the proposing member and the apply.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// The user's roles do not allow the request.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// An unknown or expired token.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// A request that is well-formed but not valid (the message says why), e.g. bad enum values.
    #[error("{0}")]
    InvalidArgument(String),
    /// An RPC raftcd does not provide (yet).
    #[error("{0}")]
    Unimplemented(String),
    /// The member is stopping.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A storage failure. Fatal for the member: it stops rather than limping on.
    #[error("raftcd: storage: {0}")]
    Storage(String),
}

impl Error {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            Compacted | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | RequestTooLarge
            | InvalidArgument(_) | MemberIdRemoved | AuthFailed | UserEmpty | RoleEmpty | InvalidAuthMgmt
            | AuthOldRevision => Code::InvalidArgument,
            AuthNotEnabled | UserExists | UserNotFound | RoleExists | RoleNotFound | RoleNotGranted
            | PermissionNotGranted | RootUserNotExist | RootRoleNotExist => Code::FailedPrecondition,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists
            | NotLeader
            | NotLearner
            | LearnerNotReady
            | TooManyLearners
            | NotSupportedForLearner
            | PeerUrlExists
            | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader | LeaderChanged | Timeout | UnhealthyCluster | Stopped => Code::Unavailable,
            Corrupt => Code::DataLoss,
            Unimplemented(_) => Code::Unimplemented,
            Storage(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::Storage(e.to_string())
    }
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Error {
        Error::Storage(format!("raft: {e}"))
    }
}

/// Result with the server's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
