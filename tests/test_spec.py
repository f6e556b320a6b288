import pytest

from edgeopt.errors import UsageError
from edgeopt.spec import parse_input


def test_image_input_gets_dynamic_batch():
    s = parse_input("image:1x3x224x224:float32")
    assert s.name == "image" and s.shape == ("batch", 3, 224, 224) and s.dtype == "float32"


def test_token_ids_get_dynamic_sequence():
    assert parse_input("input_ids:1,128:int64").shape == ("batch", "sequence")


def test_named_axes_are_kept():
    assert parse_input("x:n,3,h,w:float32").shape == ("n", 3, "h", "w")


@pytest.mark.parametrize("bad", ["x", "x:1x3:float99", "x::float32", "x:1x0:float32", "x:1x-3:float32", ":1:int64"])
def test_bad_specs(bad):
    with pytest.raises(UsageError):
        parse_input(bad)
