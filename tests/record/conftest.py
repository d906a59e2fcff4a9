"""The record tests: the Python recorder (tools/record/fpscope_record.py), its crash safety and
the committed traces (datasets/traces). Run by ctest under FPSCOPE_PYTHON, or directly:

    .venv/bin/python -m pytest -q tests/record
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "tools" / "record")]
