//! How the store opens, checks and repairs its files (the orders file and the idempotency
//! journal): only regular files, opens that never hang on a FIFO, a failed append taken
//! back, a partial last line removed, and directory syncs that make a new name durable.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{StoreError, io_error_at};

/// [`StoreError::NotARegularFile`]'s `role` for the orders file.
pub(crate) const ORDERS_FILE: &str = "the orders file";
/// [`StoreError::NotARegularFile`]'s `role` for the idempotency journal.
pub(crate) const JOURNAL: &str = "the idempotency journal";

/// Whether [`open_to_append`] may create the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Open it, or create it if it is missing.
    IfMissing,
    /// Only create it: fails with `AlreadyExists` if it is there.
    New,
    /// Only open it: fails with `NotFound` if it is missing.
    Never,
}

/// Opens `path` to append, creating it as `create` says.
///
/// Also readable: under the lock the store reads the orders file's last bytes (is there a
/// partial line?) and the journal's new records. Non-blocking where we know the flag's
/// value: if the path was swapped for a FIFO after it was checked, the open fails at once
/// (ENXIO) instead of hanging until some reader appears. For a regular file the flag
/// changes nothing.
pub(crate) fn open_to_append(path: &Path, create: Create) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    match create {
        Create::IfMissing => options.create(true),
        Create::New => options.create_new(true),
        Create::Never => &mut options,
    };
    set_nonblocking(&mut options);
    options.open(path)
}

/// `O_NONBLOCK` on the targets whose value we know without the `libc` crate (this crate
/// depends on `std` and an error derive only): 0o4000 is asm-generic's value, used by
/// x86_64 and aarch64 Linux. Elsewhere the metadata check before the open is the only
/// guard against a FIFO.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn set_nonblocking(options: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    options.custom_flags(O_NONBLOCK);
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn set_nonblocking(_options: &mut OpenOptions) {}

/// Refuses a path that exists and is not a regular file, before anything opens it: opening
/// a FIFO for writing blocks until a reader appears (start-up would hang), and reading one
/// blocks until a writer appears. A missing path is fine (it will be created); any other
/// error is left to the open that follows, which reports it with its action.
pub(crate) fn refuse_special_file(path: &Path, role: &'static str) -> Result<(), StoreError> {
    match std::fs::metadata(path) {
        Ok(metadata) => require_regular(&metadata, path, role),
        Err(_) => Ok(()),
    }
}

/// The same check on what was really opened, in case the path changed after the check.
pub(crate) fn require_regular_open(
    file: &File,
    path: &Path,
    role: &'static str,
) -> Result<(), StoreError> {
    let metadata = file
        .metadata()
        .map_err(|error| io_error_at("read the metadata of", path, error))?;
    require_regular(&metadata, path, role)
}

fn require_regular(metadata: &Metadata, path: &Path, role: &'static str) -> Result<(), StoreError> {
    if metadata.is_file() {
        Ok(())
    } else {
        Err(StoreError::NotARegularFile {
            path: path.to_owned(),
            kind: kind_of(metadata.file_type()),
            role,
        })
    }
}

fn kind_of(file_type: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// A partial last line the store removed from the orders file; see
/// `PurchaseOrderStore::repaired_tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairedTail {
    /// The orders file.
    pub path: PathBuf,
    /// Where the partial line started: the file's length after the repair.
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes_removed: u64,
    /// The removed bytes as text for a log line: invalid UTF-8 replaced, at most
    /// [`RepairedTail::SHOWN_BYTES`] bytes of them, then `…` if there were more.
    pub removed_text_lossy: String,
}

impl RepairedTail {
    /// How much of the removed bytes [`RepairedTail::removed_text_lossy`] shows: more than
    /// the longest order line, so a cut order line is shown whole.
    pub const SHOWN_BYTES: usize = 512;
}

/// The longest partial last line the store removes on its own. The longest order line is
/// under 500 bytes, but a power loss can leave a tail of NUL bytes spanning several pages
/// (the file's size reached the disk, its data did not). A longer tail without a newline
/// is not an interrupted append of ours: the path probably names a file that is not an
/// orders file, and truncating it would destroy data, so the store refuses instead.
const MAX_REPAIRABLE_TAIL: u64 = 64 * 1024;

/// A partial last line found in the orders file: it does not end with `\n`.
///
/// Removing it is right when the caller holds the file's OS lock, so no writer of ours is
/// in the middle of an append: such a tail is what was left when an append was cut short
/// (a crash, a power loss, a full disk whose partial line could not be taken back). An
/// order is acknowledged only after its whole line (newline included) is written, so a
/// partial line was never acknowledged and removing it loses nothing anyone was told
/// about; appending after it would glue the next acknowledged order onto it
/// (`PurcPurchase order for item: …`) and corrupt that order; refusing to start would turn
/// a power loss into an outage.
#[derive(Debug)]
pub(crate) struct PartialTail {
    /// The file's length now.
    len: u64,
    /// Its length without the partial line: just after the last `\n`, or 0.
    keep: u64,
    /// What [`RepairedTail::removed_text_lossy`] will show.
    shown: String,
}

/// Finds a partial last line in `file` (`None` if the file is empty or ends with `\n`).
/// A tail longer than [`MAX_REPAIRABLE_TAIL`] is an error: not an interrupted append.
pub(crate) fn find_partial_tail(
    file: &File,
    path: &Path,
) -> Result<Option<PartialTail>, StoreError> {
    let len = file
        .metadata()
        .map_err(|error| io_error_at("read the length of", path, error))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    let read = |from| read_range(file, from, len).map_err(|error| io_error_at("read", path, error));
    if read(len - 1)? == b"\n" {
        return Ok(None);
    }
    let window_start = len.saturating_sub(MAX_REPAIRABLE_TAIL + 1);
    let window = read(window_start)?;
    let keep = match window.iter().rposition(|&b| b == b'\n') {
        Some(newline) => window_start + newline as u64 + 1,
        None if window_start == 0 && len <= MAX_REPAIRABLE_TAIL => 0,
        None => {
            return Err(io_error_at(
                "repair the partial last line of",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "its last {MAX_REPAIRABLE_TAIL} bytes hold no newline, so they are not \
                         an order line cut short by a crash or a full disk; this does not look \
                         like an orders file written by this store. Check the file, or choose \
                         another --orders-file"
                    ),
                ),
            ));
        }
    };
    let tail = &window[usize::try_from(keep - window_start).unwrap_or(window.len())..];
    let shown_bytes = &tail[..tail.len().min(RepairedTail::SHOWN_BYTES)];
    let mut shown = String::from_utf8_lossy(shown_bytes).into_owned();
    if shown_bytes.len() < tail.len() {
        shown.push('…');
    }
    Ok(Some(PartialTail { len, keep, shown }))
}

impl PartialTail {
    /// Truncates the partial line away (not synced: the caller decides what a failed sync
    /// means for it).
    pub(crate) fn remove(self, file: &File, path: &Path) -> io::Result<RepairedTail> {
        file.set_len(self.keep)?;
        Ok(RepairedTail {
            path: path.to_owned(),
            offset: self.keep,
            bytes_removed: self.len - self.keep,
            removed_text_lossy: self.shown,
        })
    }
}

/// Takes a failed append back: truncates `file` to `len_before` if the failed write left
/// bytes behind. Returns whether it truncated. The caller holds the file's locks, so every
/// byte past `len_before` is from that write.
pub(crate) fn truncate_back(file: &File, len_before: u64) -> io::Result<bool> {
    if file.metadata()?.len() == len_before {
        return Ok(false);
    }
    file.set_len(len_before)?;
    Ok(true)
}

/// The bytes of `file` from `from` to `to` (fewer if the file is shorter).
pub(crate) fn read_range(file: &File, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut reader = file;
    reader.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    reader
        .take(to.saturating_sub(from))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Which file a path named when it was opened: (device, inode).
pub(crate) type FileId = (u64, u64);

/// `None` where there is no inode to compare: callers must then assume the file may have
/// been replaced.
#[cfg(unix)]
pub(crate) fn file_id(metadata: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
pub(crate) fn file_id(_metadata: &Metadata) -> Option<FileId> {
    None
}

/// Makes a file's creation, rename or removal in its directory durable: on Linux a new
/// name is only certain to survive a power loss once the directory itself is fsynced.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    sync_dir(dir).map_err(|error| io_error_at("sync the directory", dir, error))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Elsewhere a directory cannot be opened like a file, and its entries are made durable
/// with the file.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(content: &[u8]) -> (Option<RepairedTail>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        std::fs::write(&path, content).unwrap();
        let file = open_to_append(&path, Create::IfMissing).unwrap();
        let tail = find_partial_tail(&file, &path)
            .unwrap()
            .map(|tail| tail.remove(&file, &path).unwrap());
        (tail, std::fs::read(&path).unwrap())
    }

    #[test]
    fn a_file_ending_in_a_newline_or_empty_is_left_alone() {
        for content in [&b""[..], b"Purchase order for item: 1\n"] {
            assert_eq!(repaired(content), (None, content.to_vec()));
        }
    }

    #[test]
    fn a_partial_last_line_is_cut_back_to_the_last_newline() {
        let (tail, left) = repaired(b"Purchase order for item: 1\nPurch");
        let tail = tail.unwrap();
        assert_eq!(left, b"Purchase order for item: 1\n");
        assert_eq!(
            (
                tail.offset,
                tail.bytes_removed,
                tail.removed_text_lossy.as_str()
            ),
            (27, 5, "Purch")
        );
        // No newline at all: the whole file was one cut line.
        let (tail, left) = repaired(b"Purchase ord\xe2");
        assert_eq!(left, b"");
        assert_eq!(tail.unwrap().removed_text_lossy, "Purchase ord\u{FFFD}");
    }

    #[test]
    fn a_long_tail_of_nul_bytes_is_removed_but_shown_cut() {
        let mut content = b"Purchase order for item: 1\n".to_vec();
        content.extend(std::iter::repeat_n(0u8, 8192));
        let (tail, left) = repaired(&content);
        let tail = tail.unwrap();
        assert_eq!(left, b"Purchase order for item: 1\n");
        assert_eq!(tail.bytes_removed, 8192);
        assert_eq!(
            tail.removed_text_lossy.chars().count(),
            RepairedTail::SHOWN_BYTES + 1
        );
        assert!(tail.removed_text_lossy.ends_with('…'));
    }

    #[test]
    fn a_file_with_no_newline_near_its_end_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.jpg");
        let content = vec![b'x'; MAX_REPAIRABLE_TAIL as usize + 10];
        std::fs::write(&path, &content).unwrap();
        let file = open_to_append(&path, Create::IfMissing).unwrap();
        let err = find_partial_tail(&file, &path).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(path.to_str().unwrap())
                && msg.contains("does not look like an orders file")
                && msg.contains("--orders-file"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), content, "left as it was");
    }
}
