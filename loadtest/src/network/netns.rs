//! A handle on one network namespace, to put processes and threads into it.

use std::fs::File;
use std::io;
use std::os::fd::AsFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use nix::sched::{CloneFlags, setns};

/// A network namespace, by the file `ip netns add` bind-mounts for it
/// (`/run/netns/NAME`), held open: the handle stays valid however the name changes.
#[derive(Debug, Clone)]
pub struct Netns {
    name: String,
    file: Arc<File>,
}

impl Netns {
    /// Opens the namespace `ip netns add NAME` made.
    pub fn open(name: &str) -> io::Result<Netns> {
        let file = File::open(Path::new("/run/netns").join(name))?;
        Ok(Netns {
            name: name.to_string(),
            file: Arc::new(file),
        })
    }

    /// The namespace this thread is in now, to come back to.
    pub fn current() -> io::Result<Netns> {
        let file = File::open("/proc/thread-self/ns/net")?;
        Ok(Netns {
            name: "(the lab's own)".into(),
            file: Arc::new(file),
        })
    }

    /// `rsl-PID-HOST`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes the child that `command` spawns join this namespace before it executes the
    /// program: it never has a socket anywhere else, and what it starts inherits the
    /// namespace.
    pub fn enter_on_exec(&self, command: &mut Command) {
        let file = Arc::clone(&self.file);
        // SAFETY: the hook runs in the forked child before exec and makes one
        // async-signal-safe system call (setns) on a descriptor opened beforehand; it
        // allocates nothing (an io::Error from an errno does not allocate).
        unsafe {
            command.pre_exec(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
            });
        }
    }

    /// Moves the calling thread into this namespace. Threads it starts afterwards are
    /// born in it; sockets opened earlier stay where they were opened.
    pub fn enter_this_thread(&self) -> io::Result<()> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }
}
