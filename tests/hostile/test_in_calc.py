"""Item 15 (and calc's part of item 20): calc streams its results (output while input still
comes), bounds a line's length, echoes a bad token quoted (control characters as '?') and shortened (a NUL byte no longer
truncates the message), and reads a zero-padded code as the code it is."""
import os
import select
import subprocess

import pytest

from conftest import assert_one_line_error, limited, run

MiB = 1 << 20


def calc(fpscope, data, *args, **kw):
    return run([fpscope.path, "calc", "-f", "fp16", "-o", "add", *args], input=data, **kw)


def test_results_stream_while_input_still_comes(fpscope):
    proc = subprocess.Popen([fpscope.path, "calc", "-f", "fp16", "-o", "add"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # A few lines, and the input left open: results must come before its end.
        proc.stdin.write(b"3c00 3c00\n" * 3)
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no result before the end of the input: calc holds every result"
        assert os.read(proc.stdout.fileno(), 15) == b"4000\n" * 3
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def test_many_lines_in_bounded_memory(fpscope):
    # 6 M cases (about 25 bytes each were held: 150 MB) under a 128 MiB address-space limit
    # beyond what the process needs to start.
    p = subprocess.run([fpscope.path, "calc", "-f", "fp16", "-o", "add"], input=b"3c00 3c00\n" * (6 << 20),
                       capture_output=True, timeout=300, preexec_fn=limited(address_space=320 * MiB))
    assert p.returncode == 0, p.stderr[-500:]
    assert p.stdout == b"4000\n" * (6 << 20)


def test_long_line_is_bounded_and_not_echoed_whole(fpscope):
    p = calc(fpscope, "3c00 " + "a" * (32 * MiB) + "\n", timeout=120, preexec_fn=limited(address_space=320 * MiB))
    assert_one_line_error(p, "line 1", status=1)
    assert len(p.stderr) < 400, len(p.stderr)


def test_nul_byte_is_shown_not_truncating(fpscope):
    p = calc(fpscope, "3c00 3c\x0000zz\n", timeout=30)
    assert_one_line_error(p, "line 1", "not a hex code", status=1)
    assert "\x00" not in p.stderr and "'3c?00zz'" in p.stderr  # options.hpp's quoted(): '?' for it


def test_control_characters_escaped(fpscope):
    p = calc(fpscope, "3c00 \x1b]0;owned\x07\n", timeout=30)
    assert_one_line_error(p, "line 1", status=1)
    assert "\x1b" not in p.stderr and "\x07" not in p.stderr and "'?]0;owned?'" in p.stderr


@pytest.mark.parametrize("code", ["00000000003c00", "0x0000000000003C00"])
def test_zero_padded_code(fpscope, code):
    p = calc(fpscope, f"{code} 3c00\n", timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "4000\n"


def test_too_wide_after_padding_still_refused(fpscope):
    p = calc(fpscope, "0000000000013c00 3c00\n", timeout=30)
    assert_one_line_error(p, "line 1", "does not fit", status=1)
