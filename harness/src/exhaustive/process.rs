//! The POSIX calls the forking replay makes, wrapped so that the rest of `exhaustive` holds
//! no `unsafe`: forking (refused unless the process has exactly one thread), waiting for a
//! child, ending a child without unwinding into its parent's frames, memory shared with every
//! child, and writing one report line to a pipe in one piece.
//!
//! The invariant: [`fork`] only ever runs in a process with one thread (it checks), so the
//! child's copy of every lock and of the allocator is consistent and the child may do
//! anything its parent could; a child only ever leaves through [`exit_now`].

use std::io;
use std::sync::atomic::AtomicU64;

/// The threads this process has now (field 20 of `/proc/self/stat`), read into a buffer on
/// the stack: a fork's check must not touch the heap (every heap page a child writes is one
/// more page copied).
pub fn threads() -> io::Result<usize> {
    let mut buffer = [0u8; 1024];
    let path = c"/proc/self/stat";
    // SAFETY: a NUL-terminated path; the descriptor is closed below on every path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reads at most the buffer's length into the buffer.
    let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    let error = io::Error::last_os_error();
    // SAFETY: `fd` is open and ours.
    unsafe { libc::close(fd) };
    let read = usize::try_from(read).map_err(|_| error)?;
    let stat = &buffer[..read];
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = stat
        .iter()
        .rposition(|byte| *byte == b')')
        .ok_or_else(|| io::Error::other("/proc/self/stat has no command name"))?;
    stat[after_name + 1..]
        .split(|byte| *byte == b' ')
        .filter(|field| !field.is_empty())
        .nth(17)
        .and_then(|field| std::str::from_utf8(field).ok()?.parse().ok())
        .ok_or_else(|| io::Error::other("/proc/self/stat has no thread count"))
}

/// Which side of a fork this is.
#[derive(Debug)]
pub enum Forked {
    /// The new process.
    Child,
    /// The process that forked, with the child's id.
    Parent(libc::pid_t),
}

/// Forks this process; refused unless it has exactly one thread (a fork copies only the
/// calling thread, so another thread's lock or allocation in progress would be copied
/// half-done). The check reads `/proc` once per call (a few microseconds, beside the fork's
/// tens).
pub fn fork() -> io::Result<Forked> {
    let count = threads()?;
    if count != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {count} threads"
        )));
    }
    // SAFETY: the process has one thread (checked just above; this thread starts none
    // between the check and the call), so the child starts from a consistent address space.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
}

/// Waits for child `pid` to end.
pub fn wait(pid: libc::pid_t) -> io::Result<Ended> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for waitpid to write to.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != -1 {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        Ended::Exited(libc::WEXITSTATUS(status))
    } else {
        Ended::Killed(libc::WTERMSIG(status))
    })
}

/// Ends this (child) process at once: no unwinding into the frames it copied from its
/// parent, no destructors, no flushing of buffers its parent also holds.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` never returns and touches nothing of this process's memory.
    unsafe { libc::_exit(code) }
}

/// Writes `line` to file descriptor `fd` in one `write` (a pipe writes up to `PIPE_BUF`
/// bytes, 4096 on Linux, in one piece, so lines from many processes never interleave).
pub fn write_line(fd: i32, line: &str) -> io::Result<()> {
    let bytes = line.as_bytes();
    if bytes.len() > libc::PIPE_BUF {
        return Err(io::Error::other("a report line longer than PIPE_BUF"));
    }
    loop {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written >= 0 {
            return if written as usize == bytes.len() {
                Ok(())
            } else {
                Err(io::Error::other("a short write to the report pipe"))
            };
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Zeroed memory shared with every child forked after it was made (`MAP_SHARED`). A fork
/// does not copy a shared mapping's page tables, so a big plan kept here costs forks
/// nothing.
#[derive(Debug)]
pub struct Shared {
    start: *mut u64,
    words: usize,
}

impl Shared {
    /// `words` zeroed 64-bit words.
    pub fn new(words: usize) -> io::Result<Self> {
        let len = words.max(1) * 8;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing; the result is
        // checked before use.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            start: start.cast(),
            words: words.max(1),
        })
    }

    /// The mapping as bytes to fill (before any fork).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `words * 8` bytes, readable and writable, and borrowed
        // mutably for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.start.cast(), self.words * 8) }
    }

    /// The mapping as 32-bit words.
    pub fn u32s(&self) -> &[u32] {
        // SAFETY: page-aligned, `words * 8` bytes, and every bit pattern is a u32.
        unsafe { std::slice::from_raw_parts(self.start.cast(), self.words * 2) }
    }

    /// The mapping as counters every process sharing it may add to.
    pub fn counters(&self) -> &[AtomicU64] {
        // SAFETY: page-aligned, `words` 64-bit words, zeroed or written only atomically
        // once counters are handed out; atomics on shared memory are atomic across
        // processes on the platforms Linux runs on.
        unsafe { std::slice::from_raw_parts(self.start.cast(), self.words) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; nothing borrows it any more.
        unsafe {
            libc::munmap(self.start.cast(), self.words * 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_process_with_other_threads_is_not_forked() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        let refused = fork().unwrap_err();
        assert!(refused.to_string().contains("threads"), "{refused}");
        stop.send(()).unwrap();
        other.join().unwrap().unwrap();
    }

    #[test]
    fn shared_counters_start_at_zero() {
        let shared = Shared::new(3).unwrap();
        assert!(
            shared
                .counters()
                .iter()
                .all(|c| c.load(Ordering::SeqCst) == 0)
        );
        shared.counters()[1].fetch_add(2, Ordering::SeqCst);
        assert_eq!(shared.u32s().len(), 6);
    }
}
