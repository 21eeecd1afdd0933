"""`stylemask compare` on the fixtures: every network within tolerance, and failures detected.

The fixtures are random weights in the official formats (tests/fixtures/*); the command converts
each file in memory and runs our JAX network and the PyTorch reference formulation
(`stylemask_jax.reference`) on the same seeded inputs.
"""

import os

import numpy as np
import pytest

from stylemask_jax import cli
from stylemask_jax.reference import compare

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FILES = {
    "--generator-pt": os.path.join(FIXTURES, "stylegan2", "generator_small.pt"),
    "--mask-net-pt": os.path.join(FIXTURES, "stylegan2", "mask_net_small.pt"),
    "--e4e-pt": os.path.join(FIXTURES, "e4e", "e4e_small.pt"),
    "--irse-pt": os.path.join(FIXTURES, "irse", "model_ir_se_small.pth"),
    "--deca-tar": os.path.join(FIXTURES, "deca", "deca_model_small.tar"),
}


def _table_rows(text):
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] in compare.NETWORKS:
            rows[cells[0]] = cells
    return rows


def test_all_five_networks_within_tolerance(capsys):
    args = [a for pair in FILES.items() for a in pair]
    assert cli.main(["compare", *args]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert sorted(rows) == sorted(compare.NETWORKS)
    for name, cells in rows.items():
        max_abs, tol = float(cells[2]), float(cells[5])
        assert cells[8] == "ok" and max_abs <= tol, cells
        assert max_abs > 0  # two implementations, not one compared with itself
        assert tol >= compare.TOLERANCES[name]
    assert "all 5 networks within tolerance" in out


def test_too_tight_tolerance_fails(capsys):
    code = cli.main(["compare", "--mask-net-pt", FILES["--mask-net-pt"],
                     "--tolerance", "mask-net=1e-12"])
    out = capsys.readouterr().out
    assert code == compare.EXIT_ABOVE_TOLERANCE
    assert "above tolerance: mask-net" in out and _table_rows(out)["mask-net"][8] == "FAIL"


def test_tampered_conversion_fails(monkeypatch, capsys):
    """A converter bug (one output bias off by 1e-3) is caught: the torch side reads the file as is."""
    import convert_weights.mask_net as mask_net
    original = mask_net.convert_mask_net

    def tampered(path, expected_widths=None):
        variables, arch = original(path, expected_widths)
        bias = np.array(variables["params"]["network_00"]["fc2"]["bias"])
        bias[0] += 1e-3
        variables["params"]["network_00"]["fc2"]["bias"] = bias
        return variables, arch

    monkeypatch.setattr(mask_net, "convert_mask_net", tampered)
    assert cli.main(["compare", "--mask-net-pt", FILES["--mask-net-pt"]]) == 1
    assert "above tolerance: mask-net" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    ([], "give at least one checkpoint"),
    (["--mask-net-pt", FILES["--mask-net-pt"], "--tolerance", "nope=1"], "--tolerance 'nope=1'"),
])
def test_bad_input_is_one_line_error(argv, message, capsys):
    assert cli.main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylemask: error: ") and message in err and err.count("\n") == 1
