import SagaKit

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive advisory lock (`flock`) on the sidecar file `<log path>-sagakit.lock`, held while a
/// store owns its log so that a second engine, in this process or another, cannot recover the same
/// sagas.
///
/// `flock` locks belong to an open file description, so two opens in one process exclude each other
/// just as two processes do, and the kernel drops the lock when the process dies: a crash never leaves
/// a stale owner. The sidecar file itself is left in place; deleting it while another process waits on
/// it would let two owners hold locks on different inodes.
struct OwnershipLock: ~Copyable {
    private let descriptor: Int32

    /// Takes the lock, or throws `inUse` when another store holds it.
    init(logPath: String) throws(SagaStoreError) {
        let lockPath = logPath + "-sagakit.lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            switch code {
            case EROFS:
                throw SagaStoreError(
                    .readOnly, path: logPath, message: "cannot create the lock file '\(lockPath)': \(reason)")
            default:
                throw SagaStoreError(
                    .cannotOpen, path: logPath, message: "cannot create the lock file '\(lockPath)': \(reason)")
            }
        }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            close(descriptor)
            if code == EWOULDBLOCK {
                throw SagaStoreError(
                    .inUse, path: logPath,
                    message:
                        "another SQLiteSagaStore (in this or another process) already owns the saga log '\(logPath)'; two engines on one log would both recover the same sagas"
                )
            }
            throw SagaStoreError(
                .io, path: logPath, message: "cannot lock '\(lockPath)': \(String(cString: strerror(code)))")
        }
        self.descriptor = descriptor
    }

    /// Releases the lock when the value goes away.
    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
