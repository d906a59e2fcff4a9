"""fpscope_record: the recorder's old import path, kept for the scripts that do

    import sys; sys.path.insert(0, "tools/record")
    from fpscope_record import Recorder

The recorder is `fpscope.record` (lib/python/fpscope/record.py; `pip install .` installs it
with the package). This shim loads that file from this checkout, found from its own location
(not the working directory), as the module `fpscope_record` itself, so that setting
`fpscope_record.CHUNK` (the tests do) changes the recorder. It does not import the fpscope
package: the recorder needs only numpy and h5py (torch for torch tensors), not the compiled
module, so it works in a checkout that was never built. (So record.py must keep to absolute
imports.)
"""
import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "lib" / "python" / "fpscope" / "record.py"
_spec = importlib.util.spec_from_file_location(__name__, _path)
_module = importlib.util.module_from_spec(_spec)
sys.modules[__name__] = _module  # the import statement returns what sys.modules holds
_spec.loader.exec_module(_module)
