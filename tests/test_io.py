"""Files (``nica/_src/io.py``): atomic writes and a look at a pickle's opening without
unpickling it.  (Their users: tests/test_checkpoint.py and tests/test_cli_files.py.)"""

import os
import pickle

import pytest

from nica._src.io import pickle_opening, write_atomically


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


def test_without_make_dirs_a_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "nowhere" / "out.bin", lambda handle: handle.write(b"x"), make_dirs=False)
    assert not (tmp_path / "nowhere").exists()


def test_a_write_through_a_symbolic_link_replaces_the_file_it_names(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    (tmp_path / "link.bin").symlink_to(real)
    write_atomically(tmp_path / "link.bin", lambda handle: handle.write(b"new"))
    assert (tmp_path / "link.bin").is_symlink() and real.read_bytes() == b"new"


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
