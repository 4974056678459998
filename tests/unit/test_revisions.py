"""Template histories: which pod templates a workload was recorded with, to tell a rollback."""

from __future__ import annotations

from kubeledger.core import revisions
from unit import objects


def template(image: str) -> dict[str, object]:
    return objects.pod_template([objects.container(image=image)])


A, B, C = (revisions.fingerprint(template(f"registry.example.com/web:1.{n}")) for n in range(3))


def test_the_fingerprint_changes_with_the_template() -> None:
    assert A != B


def test_the_fingerprint_ignores_key_order() -> None:
    original = template("registry.example.com/web:1.0")
    reordered = {key: original[key] for key in reversed(list(original))}

    assert revisions.fingerprint(reordered) == revisions.fingerprint(original)


def test_a_projection_without_a_template_has_no_fingerprint() -> None:
    role = {"metadata": {}, "rules": [{"verbs": ["get"]}]}

    assert revisions.template_fingerprint(role) is None
    assert revisions.template_fingerprint({"spec": {"template": template("x:1")}}) == (
        revisions.fingerprint(template("x:1")))


def test_a_new_template_goes_last_and_one_run_again_moves_there() -> None:
    history = revisions.advanced(revisions.advanced((), A), B)

    assert history == (A, B)
    assert revisions.advanced(history, A) == (B, A)
    assert revisions.advanced(history, B) == (A, B)


def test_no_template_leaves_the_history_as_it_is() -> None:
    assert revisions.advanced((A, B), None) == (A, B)


def test_the_history_keeps_the_current_template_and_the_last_earlier_ones() -> None:
    templates = [revisions.fingerprint(template(f"web:{n}")) for n in range(15)]
    history: tuple[bytes, ...] = ()
    for each in templates:
        history = revisions.advanced(history, each)

    assert history == tuple(templates[-(revisions.EARLIER_KEPT + 1):])


def test_a_history_is_ordered_by_when_each_template_was_last_recorded() -> None:
    assert revisions.ordered({C: (5, ""), A: (1, ""), B: (7, "")}) == (A, C, B)
