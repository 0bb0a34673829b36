from shared.errors import DuplicateName, ServerNotFound, from_remote


def test_typed_errors_survive_the_rpc_round_trip():
    original = DuplicateName("a server named x already exists", {"name": ["exists"]})
    rebuilt = from_remote(type(original).__name__, list(original.args))
    assert isinstance(rebuilt, DuplicateName)
    assert rebuilt.http_status == 409
    assert rebuilt.to_dict() == {"error": "duplicate_name", "message": "a server named x already exists", "details": {"name": ["exists"]}}


def test_subclass_keeps_its_parents_status():
    assert ServerNotFound("x").http_status == 404


def test_unknown_remote_error_is_not_guessed():
    assert from_remote("KeyError", ["x"]) is None
