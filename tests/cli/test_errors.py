"""Bad input, every kind: a nonzero exit (1 runtime, 2 usage), ONE line on stderr naming the
problem, nothing on stdout, never a crash, and no output (or temporary) file left behind."""
import os
import resource
import socket
import stat
import struct
import subprocess

import numpy as np
import pytest

from conftest import assert_nothing_left, assert_one_line_error

RUNTIME, USAGE = 1, 2


def npy_bytes(header, data=b"", major=1, minor=0):
    """A hand-made .npy: magic, version, header length, header padded to 64 bytes, data."""
    n = 2 if major == 1 else 4
    h = header.encode()
    pad = (-(8 + n + len(h) + 1)) % 64
    h = h + b" " * pad + b"\n"
    length = struct.pack("<H" if n == 2 else "<I", len(h))
    return b"\x93NUMPY" + bytes([major, minor]) + length + h + data


OK_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"


def bad_inputs(d):
    """name -> (write the file, words the message must contain)."""
    def raw(b):
        return lambda p: p.write_bytes(b)

    def save(a):
        return lambda p: np.save(p, a)

    def truncated(p):
        np.save(p, np.arange(100, dtype=np.float32))
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) - 40)

    return {
        "empty": (raw(b""), ["not an .npy file"]),
        "text": (raw(b"name,value\n1,2\n"), ["not an .npy file", "bad magic"]),
        "version": (raw(npy_bytes(OK_HEADER, b"\0" * 8, major=4)), ["unsupported .npy format version 4.0"]),
        "header": (raw(npy_bytes("{'descr': '<f4', 'fortran_order': Nope, 'shape': (2,)}", b"\0" * 8)),
                   ["malformed .npy header"]),
        "header_len": (raw(b"\x93NUMPY\x01\x00\xff\xff{}"), ["malformed .npy header"]),
        "big_endian": (save(np.arange(4, dtype=">f4")), ["big-endian", ">f4"]),
        "big_endian_f8": (save(np.arange(4, dtype=">f8")), ["big-endian", ">f8"]),
        "fortran": (save(np.asfortranarray(np.ones((3, 2), np.float32))), ["Fortran"]),
        "int32": (save(np.arange(4, dtype=np.int32)), ["unsupported dtype", "<i4"]),
        "complex": (save(np.ones(4, np.complex64)), ["unsupported dtype", "<c8"]),
        "bool": (save(np.ones(4, bool)), ["unsupported dtype", "|b1"]),
        "int8": (save(np.ones(4, np.int8)), ["unsupported dtype", "|i1"]),
        "structured": (save(np.zeros(2, dtype=[("a", "<f4"), ("b", "<f4")])), ["unsupported dtype"]),
        "uint8_codes": (save(np.arange(4, dtype=np.uint8)), ["float16, float32 or float64", "uint8"]),
        "truncated": (truncated, ["truncated data", "expected 400 bytes, found 360"]),
    }


CASES = list(bad_inputs(None))


@pytest.mark.parametrize("case", CASES)
def test_convert_bad_input_file(fpscope, tmp, case):
    write, words = bad_inputs(tmp)[case]
    src = tmp / f"{case}.npy"
    write(src)
    p = fpscope.run("convert", src, "--to", "e4m3", "-o", tmp / "out.npy")
    assert_one_line_error(p, str(src), *words, status=RUNTIME)
    assert_nothing_left(tmp, src.name)


def test_convert_missing_file(fpscope, tmp):
    p = fpscope.run("convert", tmp / "missing.npy", "--to", "fp16", "-o", tmp / "out.npy")
    assert_one_line_error(p, "missing.npy", "No such file or directory", status=RUNTIME)
    assert_nothing_left(tmp)


def test_convert_directory_as_input(fpscope, tmp):
    (tmp / "d").mkdir()
    p = fpscope.run("convert", tmp / "d", "--to", "fp16", "-o", tmp / "out.npy")
    assert_one_line_error(p, "is a directory", status=RUNTIME)
    assert_nothing_left(tmp, "d")


@pytest.fixture
def good(tmp):
    src = tmp / "in.npy"
    np.save(src, np.linspace(-2, 2, 17, dtype=np.float32))
    return src


@pytest.mark.parametrize("where", ["no/such/dir/out.npy", "in.npy/out.npy", "."])
def test_convert_unwritable_output(fpscope, tmp, good, where):
    out = tmp / where
    p = fpscope.run("convert", good, "--to", "fp16", "-o", out)
    assert_one_line_error(p, "cannot write", str(out), status=RUNTIME)
    assert_nothing_left(tmp, "in.npy")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_convert_read_only_directory(fpscope, tmp, good):
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        p = fpscope.run("convert", good, "--to", "fp16", "-o", ro / "out.npy")
        assert_one_line_error(p, "cannot write", "Permission denied", status=RUNTIME)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_failed_convert_keeps_the_previous_output(fpscope, tmp):
    out = tmp / "out.npy"
    out.write_bytes(b"previous")
    src = tmp / "in.npy"
    np.save(src, np.arange(100, dtype=np.float32))
    with open(src, "r+b") as f:
        f.truncate(200)
    p = fpscope.run("convert", src, "--to", "fp16", "-o", out)
    assert_one_line_error(p, "truncated data", status=RUNTIME)
    assert out.read_bytes() == b"previous"
    assert_nothing_left(tmp, "in.npy", "out.npy")


@pytest.mark.parametrize("form", ["same path", "./in.npy", "symlink", "hard link"])
def test_convert_never_writes_over_its_input(fpscope, tmp, good, form):
    before = good.read_bytes()
    out, keep = {"same path": ("in.npy", []), "./in.npy": ("./in.npy", []),
                 "symlink": ("alias.npy", ["alias.npy"]), "hard link": ("hard.npy", ["hard.npy"])}[form]
    if form == "symlink":
        os.symlink("in.npy", tmp / "alias.npy")
    if form == "hard link":
        os.link(good, tmp / "hard.npy")
    p = fpscope.run("convert", "in.npy", "--to", "e4m3", "-o", out, cwd=tmp)
    assert_one_line_error(p, f"{out}: cannot write: it is the input file in.npy", status=RUNTIME)
    assert good.read_bytes() == before
    assert_nothing_left(tmp, "in.npy", *keep)


def make_node(tmp, kind):
    """A node that is not a regular file at tmp/NAME; returns NAME. A char device needs root."""
    if kind == "fifo":
        os.mkfifo(tmp / "node")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp / "node"))
        s.close()
    elif kind in ("char device", "link to a char device"):
        # A /dev/null of our own: never link to the real one, which a broken writer running as
        # root would replace.
        try:
            os.mknod(tmp / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")
        if kind == "char device":
            return "dev"
        os.symlink("dev", tmp / "node")
    elif kind == "link to a FIFO":
        os.mkfifo(tmp / "fifo")
        os.symlink("fifo", tmp / "node")
    elif kind == "dangling link":
        os.symlink("nowhere", tmp / "node")
    return "node"


NODES = ["fifo", "socket", "char device", "link to a char device", "link to a FIFO", "dangling link"]


@pytest.mark.parametrize("kind", NODES)
def test_convert_never_replaces_what_is_not_a_regular_file(fpscope, tmp, good, kind):
    out = tmp / make_node(tmp, kind)
    nodes = {x.name: os.lstat(x) for x in tmp.iterdir()}
    p = fpscope.run("convert", good, "--to", "fp16", "-o", out)
    assert_one_line_error(p, f"{out}: cannot write: ", status=RUNTIME)
    after = {x.name: os.lstat(x) for x in tmp.iterdir()}  # nothing added, nothing replaced
    assert {k: (stat.S_IFMT(v.st_mode), v.st_ino) for k, v in after.items()} == \
           {k: (stat.S_IFMT(v.st_mode), v.st_ino) for k, v in nodes.items()}


@pytest.mark.parametrize("kind", ["fifo", "link to a char device"])
def test_plot_never_replaces_what_is_not_a_regular_file(fpscope, tmp, good, kind):
    out = tmp / "fig.svg"
    os.rename(tmp / make_node(tmp, kind), out)
    nodes = {x.name: stat.S_IFMT(os.lstat(x).st_mode) for x in tmp.iterdir()}
    p = fpscope.run("hist", good, "--plot", out)
    assert_one_line_error(p, f"{out}: cannot write: ", status=RUNTIME)
    assert {x.name: stat.S_IFMT(os.lstat(x).st_mode) for x in tmp.iterdir()} == nodes


def test_convert_writes_through_a_symlink_to_a_regular_file(fpscope, tmp, good):
    (tmp / "real.npy").write_bytes(b"previous")
    os.symlink("real.npy", tmp / "link.npy")
    fpscope.ok("convert", good, "--to", "fp16", "-o", tmp / "link.npy")
    assert os.path.islink(tmp / "link.npy")
    np.testing.assert_array_equal(np.load(tmp / "real.npy"), np.load(good).astype(np.float16).view(np.uint16))
    assert_nothing_left(tmp, "in.npy", "link.npy", "real.npy")


def test_convert_past_the_file_size_limit_keeps_the_previous_output(fpscope, tmp):
    src = tmp / "in.npy"
    np.save(src, np.linspace(-1, 1, 1 << 20, dtype=np.float32))  # fp16 codes: 2 MiB
    out = tmp / "out.npy"
    out.write_bytes(b"previous")
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1 << 20:
        pytest.skip("the hard file size limit is below 1 MiB")
    p = fpscope.run("convert", src, "--to", "fp16", "-o", out,
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard)))
    assert_one_line_error(p, f"{out}: cannot write: File too large", "ulimit -f", status=RUNTIME)
    assert out.read_bytes() == b"previous"
    assert_nothing_left(tmp, "in.npy", "out.npy")


@pytest.mark.parametrize("args,words", [
    (["--to", "fp17"], ["--to", "unknown format 'fp17'", "e4m3"]),
    (["--to", "fp16", "--rounding", "nearest"], ["unknown rounding mode 'nearest'", "rne"]),
    (["--to", "fp16", "--profile", "amd"], ["unknown profile 'amd'", "cuda"]),
    (["--to", "fp16", "--overflow", "clamp"], ["unknown overflow policy 'clamp'", "saturate"]),
    (["--to", "fp16", "--scale", "abc"], ["--scale"]),
    (["--to", "fp16", "--scale", "nan"], ["positive finite"]),
    (["--to", "fp16", "--chunk", "0"], ["--chunk"]),
    (["--to", "fp16", "--seed", "-1"], ["--seed"]),
    ([], ["--to is required"]),
])
def test_convert_usage_errors(fpscope, tmp, good, args, words):
    p = fpscope.run("convert", good, "-o", tmp / "out.npy", *args)
    assert_one_line_error(p, *words, status=USAGE)
    assert_nothing_left(tmp, "in.npy")


def test_convert_without_output(fpscope, tmp, good):
    assert_one_line_error(fpscope.run("convert", good, "--to", "fp16"), "--output", status=USAGE)
    assert_nothing_left(tmp, "in.npy")


@pytest.mark.parametrize("value", ["abc", "1.5x", "", " 1", "0x", "1e", "0x1g", "1,5", "--5", "0x1.8q3", "1e5e5"])
def test_cast_malformed_numbers(fpscope, value):
    p = fpscope.run("cast", "--to", "fp16", "--", value)
    assert_one_line_error(p, "malformed number", status=USAGE)


def test_cast_bad_bit_patterns(fpscope):
    assert_one_line_error(fpscope.run("cast", "0x10000", "--to", "fp16"), "does not fit in fp16", status=USAGE)
    assert_one_line_error(fpscope.run("cast", "0x40", "--to", "e2m3"), "does not fit in e2m3", status=USAGE)
    assert_one_line_error(fpscope.run("cast", "0x123456789", "--to", "tf32"), "does not fit", status=USAGE)
    assert_one_line_error(fpscope.run("cast", "--to", "fp16", "--", "-0x3c00"), "bit pattern has no sign",
                          status=USAGE)


def test_cast_malformed_value_prints_nothing(fpscope):
    # All values are read before any is printed.
    p = fpscope.run("cast", "1", "2", "oops", "--to", "fp16")
    assert_one_line_error(p, "'oops'", status=USAGE)


@pytest.mark.parametrize("args,words", [
    (["1", "--to", "fp17"], ["unknown format 'fp17'"]),
    (["1", "--to", "fp16", "-r", "up"], ["unknown rounding mode 'up'"]),
    (["1", "--to", "fp16", "-p", "x"], ["unknown profile 'x'"]),
    (["1"], ["--to is required"]),
    (["--to", "fp16"], ["VALUE is required"]),
    (["1", "--to", "fp16", "--frobnicate"], ["--frobnicate"]),
])
def test_cast_usage_errors(fpscope, args, words):
    assert_one_line_error(fpscope.run("cast", *args), *words, status=USAGE)


@pytest.mark.parametrize("args,words", [
    ([], ["subcommand is required"]),
    (["frob"], ["unknown command 'frob'", "cast"]),
    (["--frob"], ["--frob"]),
    (["formats", "extra"], ["extra"]),
])
def test_top_level_usage_errors(fpscope, args, words):
    assert_one_line_error(fpscope.run(*args), *words, status=USAGE)


def test_write_error_on_stdout(fpscope):
    with open("/dev/full", "w") as full:
        p = subprocess.run([fpscope.path, "formats", "--json"], stdout=full, stderr=subprocess.PIPE, text=True)
    assert p.returncode == RUNTIME
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fpscope: error: ")
