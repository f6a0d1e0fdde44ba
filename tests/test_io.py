"""Files (``nica/_src/io.py``): atomic writes and a look at a pickle's opening without
unpickling it.  (Their users: tests/test_checkpoint.py and tests/test_cli_files.py.)"""

import os
import pickle
import re
import stat
import subprocess
import time

import pytest

from nica._src import io as _io
from nica._src.io import STALE_SECONDS, check_writable, pickle_opening, remove_stale_temporaries, write_atomically


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_a_write_appears_whole_with_the_new_files_permissions(tmp_path):
    umask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "sub" / "out.bin", lambda handle: handle.write(b"abc"))
    finally:
        os.umask(umask)
    target = tmp_path / "sub" / "out.bin"  # the folder is made
    assert target.read_bytes() == b"abc" and target.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path / "sub") == []


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    write_atomically(target, lambda handle: handle.write(b"new"))
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail_half_way(handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        write_atomically(target, fail_half_way)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):  # an interruption too
        write_atomically(target, lambda handle: (_ for _ in ()).throw(KeyboardInterrupt))
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_without_make_dirs_a_missing_folder_is_refused(tmp_path):
    target = tmp_path / "nowhere" / "out.bin"
    with pytest.raises(
        ValueError, match=rf"^cannot write file '{target}': directory '{target.parent}' does not exist$"
    ):
        write_atomically(target, lambda handle: handle.write(b"x"), make_dirs=False)
    assert not (tmp_path / "nowhere").exists()


def test_a_write_through_a_symbolic_link_replaces_the_file_it_names(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    (tmp_path / "link.bin").symlink_to(real)
    write_atomically(tmp_path / "link.bin", lambda handle: handle.write(b"new"))
    assert (tmp_path / "link.bin").is_symlink() and real.read_bytes() == b"new"


# ---------------------------------------------------------------------------------------------
# only regular files are written: a FIFO, a device, a directory or a link to one is refused


def never_called(handle):
    raise AssertionError("write was called for a refused target")


def special_targets(tmp_path):
    """``{case: (path, fragment, what must still hold afterwards)}``."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    (tmp_path / "pipe_link").symlink_to(pipe)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder_link").symlink_to(tmp_path / "folder")
    return {
        "fifo": (pipe, "it is a FIFO (named pipe), not a regular file; nica writes only regular files"),
        "link_to_fifo": (
            tmp_path / "pipe_link",
            f"it is a symbolic link to '{pipe}', which is a FIFO (named pipe), not a regular file; "
            "nica writes only regular files",
        ),
        "directory": (tmp_path / "folder", "it is a directory"),
        "link_to_directory": (
            tmp_path / "folder_link",
            f"it is a symbolic link to '{tmp_path / 'folder'}', which is a directory",
        ),
    }


def kinds(tmp_path):
    return {p.name: stat.S_IFMT(os.lstat(p).st_mode) for p in tmp_path.iterdir()}


@pytest.mark.parametrize("case", ["fifo", "link_to_fifo", "directory", "link_to_directory"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_as_it_is(tmp_path, case):
    path, fragment = special_targets(tmp_path)[case]
    before = kinds(tmp_path)
    message = f"cannot write output {str(path)!r}: {fragment}"
    with pytest.raises(ValueError) as refused:
        check_writable(path, "output")
    assert str(refused.value) == message
    with pytest.raises(ValueError) as refused:
        write_atomically(path, never_called, name="output")
    assert str(refused.value) == message
    assert kinds(tmp_path) == before  # the FIFO is still a FIFO, the link a link; no temporary file


def test_dev_null_is_refused_without_being_touched():
    """Run as root, replacing /dev/null with a regular file would break the machine: only the
    check is called here (it never writes)."""
    before = os.lstat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    with pytest.raises(ValueError) as refused:
        check_writable("/dev/null", "model file")
    assert str(refused.value) == (
        "cannot write model file '/dev/null': it is a character device, not a regular file; "
        "nica writes only regular files"
    )
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_a_target_made_a_fifo_while_it_is_written_is_not_replaced(tmp_path):
    target = tmp_path / "out.bin"

    def write_then_a_fifo_appears(handle):
        handle.write(b"data")
        os.mkfifo(target)

    with pytest.raises(ValueError, match="it is a FIFO"):
        write_atomically(target, write_then_a_fifo_appears)
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "path, fragment",
    [
        ("", "^no out given \\(an empty path\\)$"),
        ("{d}/sub/", "the path ends with a separator: it names a directory, not a file$"),
        ("{d}/plain/x.bin", "'{d}/plain' is a file, not a directory$"),
        ("{d}/plain/deeper/x.bin", "'{d}/plain' is a file, not a directory$"),
        ("{d}/nowhere/x.bin", "directory '{d}/nowhere' does not exist$"),
    ],
)
def test_paths_that_cannot_name_a_file_to_write(tmp_path, path, fragment):
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(ValueError, match=fragment.format(d=re.escape(str(tmp_path)))):
        check_writable(path.format(d=tmp_path), "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_make_dirs_accepts_a_missing_folder(tmp_path):
    assert check_writable(tmp_path / "a" / "b" / "x.bin", "out", make_dirs=True) == str(tmp_path / "a" / "b" / "x.bin")
    assert not (tmp_path / "a").exists()  # a check makes nothing


def test_permissions_are_checked_before_writing(tmp_path, monkeypatch):
    """Simulated with os.access (the tests may run as root, whom file modes do not bind)."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "ro.bin").write_bytes(b"old")
    denied = {str(tmp_path / "locked"), str(tmp_path / "ro.bin")}
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) in denied else real_access(p, mode))
    with pytest.raises(
        ValueError, match=f"^cannot write out '{tmp_path}/locked/x.bin': permission denied in directory"
    ):
        write_atomically(tmp_path / "locked" / "x.bin", never_called, name="out")
    with pytest.raises(ValueError, match="^cannot write out '.*ro.bin': the existing file is read-only$"):
        write_atomically(tmp_path / "ro.bin", never_called, name="out")
    assert (tmp_path / "ro.bin").read_bytes() == b"old" and list((tmp_path / "locked").iterdir()) == []


def name_max(folder):
    return os.pathconf(folder, "PC_NAME_MAX")


def test_names_too_long_for_the_file_system_or_for_the_temporary_file(tmp_path):
    limit = name_max(tmp_path)
    overhead = len(_io._temp_prefix("")) + 8 + len(".part")  # the temporary name is this much longer
    longest = "n" * (limit - overhead)
    write_atomically(tmp_path / longest, lambda handle: handle.write(b"ok"))  # just fits
    assert (tmp_path / longest).read_bytes() == b"ok" and leftovers(tmp_path) == []
    with pytest.raises(ValueError) as refused:
        write_atomically(tmp_path / (longest + "n"), never_called, name="model file")
    assert f"the file name is {len(longest) + 1} bytes long and its temporary file's" in str(refused.value)
    assert f"the file system allows {limit}: use a name of at most {len(longest)} bytes" in str(refused.value)
    with pytest.raises(
        ValueError, match=f"the file name is {limit + 1} bytes long; the file system allows at most {limit}$"
    ):
        check_writable(tmp_path / ("n" * (limit + 1)), "out")
    with pytest.raises(ValueError, match=f"the folder name '{'d' * (limit + 1)}' is longer than the {limit} bytes"):
        check_writable(tmp_path / ("d" * (limit + 1)) / "x.bin", "out", make_dirs=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [longest]


def test_name_max_falls_back_to_255_when_the_file_system_does_not_say(tmp_path, monkeypatch):
    def no_answer(folder, name):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "pathconf", no_answer)
    with pytest.raises(ValueError, match="the file name is 256 bytes long; the file system allows at most 255$"):
        check_writable(tmp_path / ("n" * 256), "out")


# ---------------------------------------------------------------------------------------------
# temporary files: removed on failure, and when a killed writer left them (stale)


def own_temporary_name(tmp_path):
    """The temporary file's name while a write of ``x.bin`` runs (seen from inside it)."""
    seen = []
    write_atomically(tmp_path / "x.bin", lambda handle: seen.extend(leftovers(tmp_path)))
    (tmp_path / "x.bin").unlink()
    assert len(seen) == 1
    return seen[0]


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_stale_temporary_files_of_the_target_are_removed_by_the_next_write(tmp_path):
    name = own_temporary_name(tmp_path)
    match = re.fullmatch(r"\.x\.bin\.([0-9a-f]{8})-([0-9]+)\.[a-z0-9_]{8}\.part", name)
    assert match and int(match[2]) == os.getpid()  # .NAME.WRITER-PID.XXXXXXXX.part
    writer = match[1]
    old = time.time() - STALE_SECONDS - 60
    files = {
        f".out.bin.{writer}-{dead_pid()}.abcdefgh.part": "removed",  # this machine, writer dead
        f".out.bin.{writer}-{os.getpid()}.abcdefgh.part": "kept",  # a live writer (this process)
        ".out.bin.0123abcd-1.abcdefgh.part": "kept",  # another machine, recently modified
        ".out.bin.0123abcd-2.abcdefgh.part": ("removed", old),  # another machine, untouched for long
        ".out.bin.abcdefgh.part": ("removed", old),  # the earlier naming, untouched for long
        ".out.bin.ijklmnop.part": "kept",  # the earlier naming, recent
        f".other.bin.{writer}-{dead_pid()}.abcdefgh.part": "kept",  # another target's
        ".out.bin.notes.txt": "kept",  # not a temporary file's name
    }
    for file, fate in files.items():
        (tmp_path / file).write_bytes(b"partial")
        if isinstance(fate, tuple):
            os.utime(tmp_path / file, (old, old))
    link = f".out.bin.{writer}-{dead_pid()}.linklink.part"  # named as a dead writer's, but a link
    (tmp_path / link).symlink_to(tmp_path / ".out.bin.notes.txt")
    write_atomically(tmp_path / "out.bin", lambda handle: handle.write(b"new"))
    kept = {file for file, fate in files.items() if fate == "kept"}
    assert {p.name for p in tmp_path.iterdir()} == kept | {link, "out.bin"}
    assert remove_stale_temporaries(tmp_path / "out.bin") == []


class Boom:
    def __reduce__(self):
        return (os.mkdir, ("never_made",))


def test_pickle_opening_reads_up_to_the_first_opcode_that_builds_anything(tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"format": "nica-model", "version": "0.2.0", "estimator": Boom()}, protocol=4))
    opening, complete = pickle_opening(path)
    names = [name for name, _ in opening]
    assert complete and names[-1] in ("STACK_GLOBAL", "GLOBAL")  # the first that names a callable: stopped there
    strings = [arg for name, arg in opening if name in ("SHORT_BINUNICODE", "BINUNICODE")]
    assert strings[:4] == ["format", "nica-model", "version", "0.2.0"]
    assert not (tmp_path / "never_made").exists() and not os.path.exists("never_made")  # nothing was unpickled
    opening, complete = pickle_opening(path, stop=("STOP",), limit=3)
    assert complete and len(opening) == 4  # the limit counts from the first opcode


@pytest.mark.parametrize(
    "content", [b"", b"not a pickle at all", pickle.dumps(list(range(100)))[:20]], ids=["empty", "text", "truncated"]
)
def test_pickle_opening_of_what_is_not_a_whole_pickle_is_incomplete(tmp_path, content):
    path = tmp_path / "x.pkl"
    path.write_bytes(content)
    _, complete = pickle_opening(path)
    assert complete is False
