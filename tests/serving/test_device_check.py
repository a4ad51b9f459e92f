"""The server's device is checked at start-up: a name torch does not know, or a GPU the machine does
not have, is one ``InputError`` listing the devices there are (not a 503 per domain forever)."""

from __future__ import annotations

import pytest
import torch

from infra.errors import InputError
from serving.catalog import check_device


def test_a_device_the_machine_lacks_fails_at_start_up():
    assert check_device("cpu") == "cpu"
    with pytest.raises(InputError, match="device 'foo' is not a torch device; valid devices on this machine: cpu"):
        check_device("foo")
    with pytest.raises(InputError, match="'meta' cannot serve models"):
        check_device("meta")
    with pytest.raises(InputError, match="'cuda:99' requested but .*valid devices on this machine: cpu"):
        check_device("cuda:99")
    if torch.cuda.is_available():
        assert check_device("cuda") == "cuda" and check_device("cuda:0") == "cuda:0"
    else:
        with pytest.raises(InputError, match="'cuda' requested but CUDA is not available here; valid devices"):
            check_device("cuda")
