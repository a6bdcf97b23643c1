"""The one way PolyTask reads a pickle (other people's demo files): an unpickler that rebuilds numpy arrays and
plain containers only.

A pickle can execute code, so every global the file asks for is checked against `ALLOWED` before anything runs;
anything else (a class, a function such as `os.system`) is refused with `UnsafePickleError`. Used by the importers
of the authors' demo pickles (data/import_authors.py) and of relay-policy-learning play data (data/play_files.py).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy", "float32"), ("numpy", "float64"), ("numpy", "uint8"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("collections", "OrderedDict"),
})


class UnsafePickleError(ValueError):
    """The pickle asks for a global that is not a numpy array or a plain container."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(f"refusing to load global {module}.{name}: only numpy arrays and plain "
                                    "containers are accepted")
        return super().find_class(module, name)


def safe_load_pickle(path: str | Path, what: str = "pickle") -> Any:
    """The object in the pickle at `path`, if it holds only numpy arrays, scalars and lists/tuples/dicts.

    `latin1` decodes the byte strings of Python 2 pickles (relay-policy-learning's demos), as numpy recommends.
    """
    data = Path(path).read_bytes()
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a readable {what} ({type(err).__name__}: {err})") from err
