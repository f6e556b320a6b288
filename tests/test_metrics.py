import numpy as np
import pytest

from edgeopt.errors import UsageError
from edgeopt.optimize.metrics import check_max_drop, evaluate, parse_metric


def test_cosine_identical_and_perturbed():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 16))
    q = evaluate("cosine", ref, ref.copy())
    assert q.value == pytest.approx(1.0) and q.drop == pytest.approx(0.0) and q.details["nn_agreement"] == 1.0
    noisy = ref + 0.5 * rng.standard_normal(ref.shape)
    q2 = evaluate("cosine", ref, noisy)
    assert q2.drop > 0.05 and q2.details["min"] < q2.details["mean"] < 1


def test_top1_with_and_without_labels():
    ref = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 0.0]])
    out = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 5.0], [1.0, 0.0]])  # one decision flipped
    labels = np.array([0, 1, 0, 1])
    q = evaluate("top1", ref, out, labels)
    assert q.reference == 0.75 and q.value == 0.5 and q.drop == pytest.approx(0.25)
    q_nolabel = evaluate("top1", ref, out)
    assert q_nolabel.value == 0.75 and q_nolabel.drop == pytest.approx(0.25)


def test_retrieval_metrics_with_labels():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    assert evaluate("recall@1", emb, emb, labels).value == 1.0
    assert evaluate("ndcg@1", emb, emb, labels).value == 1.0
    swapped = emb[[2, 3, 0, 1]]  # neighbours now disagree with labels
    assert evaluate("recall@1", emb, swapped, labels[[0, 1, 2, 3]]).value == 1.0
    shuffled = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], dtype=float)
    q = evaluate("ndcg@1", emb, shuffled, labels)
    assert q.value < 1.0 and q.drop > 0


def test_metric_parsing_and_ranges():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    with pytest.raises(UsageError):
        parse_metric("auroc")
    assert parse_metric("auc") == ("auc", None)  # click models (issue 30)
    with pytest.raises(UsageError):
        check_max_drop("cosine", 1.5)
    with pytest.raises(UsageError):
        check_max_drop("top1", -0.1)
    check_max_drop("mse", 3.0)
    with pytest.raises(UsageError):
        evaluate("recall@5", np.ones((4, 2)), np.ones((4, 2)))


def test_neighbour_agreement_tolerates_near_ties():
    from edgeopt.optimize.metrics import neighbour_agreement

    # sample 0's two nearest neighbours (1 and 2) are near-duplicates; the candidate swaps them
    ref = np.array([[1.0, 0.0, 0.0], [0.99, 0.141, 0.0], [0.99, 0.0, 0.141], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = ref.copy()
    out[2] = [0.995, 0.0, 0.1]
    assert neighbour_agreement(ref, out) < 1.0
    assert neighbour_agreement(ref, out, tie=0.01) == 1.0


def test_nn_metric_gates_on_neighbour_agreement():
    from edgeopt.optimize.metrics import default_max_drop

    ref = np.array([[1.0, 0.0, 0.0], [0.99, 0.141, 0.0], [0.99, 0.0, 0.141], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    same = evaluate("nn", ref, ref.copy())
    assert same.metric == "nn" and same.value == 1.0 and same.drop == 0.0 and same.details["min"] == pytest.approx(1)
    out = ref.copy()
    out[2] = [0.995, 0.0, 0.1]  # sample 0 now finds 2 before 1
    q = evaluate("nn", ref, out)
    assert q.value == pytest.approx(0.8) and q.drop == pytest.approx(0.2)
    assert q.details["nn_agreement_tie_0.01"] == 1.0 and q.details["samples"] == 5
    assert parse_metric("NN") == ("nn", None) and default_max_drop("nn") == 0.03
    check_max_drop("nn", 0.03)
    with pytest.raises(UsageError):
        check_max_drop("nn", 1.0)
