"""spartan.passwd: the hash format, verification, and the command that makes hashes."""

import io
import subprocess
import sys

import pytest

from spartan import passwd

FAST = dict(n=2**4, r=1, p=1)  # cheap parameters: these tests check the format, not the cost


def test_hash_has_the_documented_format_and_no_plaintext():
    hashed = passwd.hash_password("correct horse", **FAST)
    scheme, n, r, p, salt, key = hashed.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "1", "1")
    assert "correct horse" not in hashed
    assert passwd.parse_hash(hashed)[3] and len(passwd.parse_hash(hashed)[4]) == 32


def test_default_parameters_are_slow_ones():
    n, r, p, salt, key = passwd.parse_hash(passwd.hash_password("x"))
    assert (n, r, p) == (2**14, 8, 1) and len(salt) == 16


def test_salted_each_hash_differs():
    assert passwd.hash_password("same", **FAST) != passwd.hash_password("same", **FAST)


def test_verify():
    hashed = passwd.hash_password("s3cret pass", **FAST)
    assert passwd.verify_password("s3cret pass", hashed)
    assert not passwd.verify_password("s3cret pasS", hashed)
    assert not passwd.verify_password("", hashed)


def test_verify_uses_compare_digest(monkeypatch):
    calls = []
    real = passwd.hmac.compare_digest
    monkeypatch.setattr(passwd.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    passwd.verify_password("x", passwd.hash_password("y", **FAST))
    assert calls == [1]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext",
        "bcrypt$1$2$3$AAAA$AAAA",
        "scrypt$16$1$1$!!!$AAAA",
        "scrypt$15$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ],
)
def test_bad_hashes_are_refused_without_being_echoed(bad):
    with pytest.raises(passwd.BadHash) as e:
        passwd.parse_hash(bad)
    assert not bad or bad not in str(e.value)
    assert passwd.verify_password("anything", bad) is False


def test_dummy_hash_is_a_real_hash_made_once():
    assert passwd.dummy_hash() is passwd.dummy_hash()
    passwd.parse_hash(passwd.dummy_hash())


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_main_prompts_twice_without_echo_and_prints_a_config_line():
    prompts = []
    out = io.StringIO()

    def getpass(prompt):
        prompts.append(prompt)
        return "hunter2!"

    assert passwd.main(["alice"], getpass=getpass, stdin=_Tty(), stdout=out) == 0
    assert len(prompts) == 2
    line = out.getvalue()
    assert line.startswith('alice = "scrypt$') and "hunter2" not in line
    assert passwd.verify_password("hunter2!", line.split('"')[1])


def test_main_refuses_mismatch_and_empty(capsys):
    answers = iter(["one", "two"])
    out = io.StringIO()
    assert passwd.main([], getpass=lambda p: next(answers), stdin=_Tty(), stdout=out) == 1
    assert passwd.main([], stdin=io.StringIO("\n"), stdout=out) == 1
    assert passwd.main([], stdin=io.StringIO(" padded \n"), stdout=out) == 1
    assert passwd.main([], stdin=io.StringIO("tab\there\n"), stdout=out) == 1
    assert out.getvalue() == ""
    assert "one" not in capsys.readouterr().err


def test_python_m_spartan_passwd_reads_a_piped_password():
    result = subprocess.run(
        [sys.executable, "-m", "spartan.passwd"],
        input="from a script\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert passwd.verify_password("from a script", hashed)
    assert "from a script" not in result.stdout + result.stderr
