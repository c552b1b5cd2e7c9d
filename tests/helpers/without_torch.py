"""python tests/helpers/without_torch.py SCRIPT [ARGS...]: runs one of our scripts with PyTorch unimportable,
so that a path that must not load it (decoding with a CTranslate2 export) fails if it ever does."""
import runpy
import sys


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} was imported: this path must run without PyTorch")


if __name__ == "__main__":
    sys.meta_path.insert(0, _NoTorch())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
