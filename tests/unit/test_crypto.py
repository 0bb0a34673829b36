import pytest

from shared.crypto import SecretBox, token_hash


def test_sealed_secret_opens_with_the_same_key_only():
    sealed = SecretBox("key-one").seal("hunter2")
    assert "hunter2" not in sealed
    assert SecretBox("key-one").open(sealed) == "hunter2"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox("key-two").open(sealed)


def test_none_stays_none():
    box = SecretBox("k")
    assert box.seal(None) is None and box.open(None) is None


def test_token_hash_is_stable_and_not_the_token():
    assert token_hash("abc") == token_hash("abc")
    assert token_hash("abc") != "abc" and len(token_hash("abc")) == 64
