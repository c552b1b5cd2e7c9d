"""The served model every serving test shares: one tiny run, one server subprocess on a free loopback
port (started once for the package), and the same model in this process as the reference."""
import pytest

from tests.helpers.runs import tiny_run
from tests.helpers.serving import Server
from transformer_mt.decoding.pytorch import Translator
from transformer_mt.run_folder import open_run


@pytest.fixture(scope="package")
def run(tmp_path_factory, sample_pairs):
    return tiny_run(tmp_path_factory.mktemp("serve"), sample_pairs[:500]).root


@pytest.fixture(scope="package")
def server(run):
    started = Server(run, "--max-wait-ms", "30")
    yield started
    started.stop()


@pytest.fixture(scope="package")
def ours(run):
    return Translator(open_run(run), device="cpu")
