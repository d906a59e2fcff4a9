"""Issue 19 item 1: no ELF file the build makes may search the current directory (or any
relative directory) for its libraries. An empty RUNPATH entry means ".": fpscope's was
'/usr/lib/x86_64-linux-gnu/hdf5/serial:' (CMake's padding for its install-time ELF editor), so a
libfmt.so.9 dropped in the working directory ran inside fpscope. Every executable and shared
module in the build tree is read here; the ELF dynamic section is parsed in Python."""
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import run

DT_NULL, DT_RPATH, DT_RUNPATH = 0, 15, 29
ET_EXEC, ET_DYN = 2, 3
SHT_DYNAMIC = 6


def search_paths(path):
    """The DT_RPATH and DT_RUNPATH strings of an ELF64 little-endian executable or shared
    object, as [(tag name, string)]; None when the file is no such ELF file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    e_type = struct.unpack_from("<H", data, 16)[0]
    if e_type not in (ET_EXEC, ET_DYN):
        return None
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != SHT_DYNAMIC:
            continue
        strtab_offset = sections[link][4]
        for at in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, at)
            if tag == DT_NULL:
                break
            if tag in (DT_RPATH, DT_RUNPATH):
                end = data.index(b"\0", strtab_offset + value)
                found.append(("RPATH" if tag == DT_RPATH else "RUNPATH", data[strtab_offset + value:end].decode()))
    return found


def unsafe_entries(path):
    """The entries of `path`'s RPATH/RUNPATH that are not absolute directories or $ORIGIN-based:
    empty ones (the current directory) and relative ones."""
    bad = []
    for tag, value in search_paths(path) or []:
        for entry in value.split(":"):
            if not (entry.startswith("/") or entry.startswith("$ORIGIN") or entry.startswith("${ORIGIN}")):
                bad.append(f"{tag} entry {entry!r} of {value!r}")
    return bad


def elf_files(build_dir):
    for p in sorted(build_dir.rglob("*")):
        # Tests' scratch directories (pytest-*: the negative control below) are not the build.
        if any(part.startswith("pytest-") for part in p.relative_to(build_dir).parts):
            continue
        if p.is_file() and not p.is_symlink() and p.stat().st_size > 64:
            with open(p, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            if search_paths(p) is not None:
                yield p


def test_no_built_executable_or_module_searches_a_relative_directory(build_dir):
    files = list(elf_files(build_dir))
    names = {p.name for p in files}
    # The set is the whole build: the CLI, the Python module and the test programs.
    assert "fpscope" in names, names
    assert any(n.startswith("_fpscope") and n.endswith(".so") for n in names), names
    assert len(files) >= 5, names
    with_paths = [p for p in files if search_paths(p)]
    assert with_paths, "no file has a RUNPATH at all: the check would prove nothing here"
    bad = {str(p.relative_to(build_dir)): unsafe_entries(p) for p in files if unsafe_entries(p)}
    assert not bad, bad


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to make a bad binary with")
def test_the_check_catches_an_empty_and_a_relative_entry(tmp_path):
    # The negative control: binaries linked with the very defect (empty and relative entries).
    src = tmp_path / "main.c"
    src.write_text("int main(void) { return 0; }\n")
    for rpath, flag in (("/usr/lib:", "--enable-new-dtags"), ("lib", "--disable-new-dtags")):
        exe = tmp_path / "bad"
        p = run(["cc", src, "-o", exe, f"-Wl,-rpath,{rpath}", f"-Wl,{flag}"])
        assert p.returncode == 0, p.stderr
        assert unsafe_entries(exe), search_paths(exe)
        readelf = shutil.which("readelf")
        if readelf:  # our parser agrees with binutils
            out = subprocess.run([readelf, "-d", exe], capture_output=True, text=True).stdout
            assert f"[{rpath}]" in out, out
    good = tmp_path / "good"
    assert run(["cc", src, "-o", good, "-Wl,-rpath,$ORIGIN/../lib:/usr/lib"]).returncode == 0
    assert search_paths(good) and not unsafe_entries(good)
