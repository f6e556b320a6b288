import pytest

from edgeopt.errors import UsageError
from edgeopt.spec import parse_input


def test_image_input_gets_dynamic_batch():
    s = parse_input("image:1x3x224x224:float32")
    assert s.name == "image" and s.shape == ("batch", 3, 224, 224) and s.dtype == "float32"


def test_the_shape_a_user_gives_is_kept():
    """8 categorical fields of a CTR ranker stay 8: a number is a fixed size (issue 30)."""
    assert parse_input("cats:1x8:int64").shape == ("batch", 8)
    assert parse_input("input_ids:1,128:int64").shape == ("batch", 128)
    assert parse_input("ids:batchxseq:int64").shape == ("batch", "seq")


def test_named_axes_are_kept():
    assert parse_input("x:n,3,h,w:float32").shape == ("n", 3, "h", "w")


@pytest.mark.parametrize("bad", ["x", "x:1x3:float99", "x::float32", "x:1x0:float32", "x:1x-3:float32", ":1:int64"])
def test_bad_specs(bad):
    with pytest.raises(UsageError):
        parse_input(bad)
