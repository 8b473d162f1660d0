"""m1-server's model_args, without a server: every value parsed strictly, and secrets never shown.

A table of good, bad and edge values for every m1-server model_arg, given as lm-eval's command line hands them over
(``lm_eval._cli.utils.key_val_to_dict``: ``true`` -> True, ``-1`` -> -1.0, ``inf`` -> inf, ``None`` -> None): each
bad one is the one-line ``ModelArgsError`` naming the key, raised before any network call or tokenizer load (both
are replaced by functions that fail the test).  Then the secrets: a key pasted into ``api_key_env`` (or a name that
is not set) is reported without being shown; a ``user:password@`` in ``base_url`` is masked in every message and
log line, the masks the start-up hook puts on lm-eval's own log line and results hold, and the real ``lm_eval``
command that stops on such a model_arg shows none of it.  The real runs against a vLLM server are in
``tests/test_server_secrets.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from m1_base.errors import ModelArgsError, ServerError
from tests.helpers import free_port

BAD = object()  # expected value of a case that must be an error
PASSWORD = "PASSWORD-m1-7f3a"
KEY = "hf_SECRETTOKEN123"


def cli(typed: str) -> dict[str, Any]:
    """model_args as lm-eval's command line converts them."""
    from lm_eval._cli.utils import key_val_to_dict

    return key_val_to_dict(typed)


@pytest.fixture
def no_network(monkeypatch):
    """Construction must stop before any network call and before the tokenizer loads."""
    import httpx

    from m1_models import server_model

    def forbidden(*args, **kwargs):
        raise AssertionError("m1-server reached the network or the tokenizer while its model_args were checked")

    monkeypatch.setattr(server_model, "_fetch_models", forbidden)
    monkeypatch.setattr(server_model, "_load_tokenizer", forbidden)
    monkeypatch.setattr(httpx, "get", forbidden)
    monkeypatch.setattr(httpx.Client, "send", forbidden)


@pytest.fixture
def server_down(monkeypatch, tiny_model):
    """No server answers: m1-server starts from model=, tokenizer= and max_model_len= (a fleet that is not up yet);
    records the trust_remote_code the tokenizer was loaded with."""
    from m1_models import server_model

    loads: list[bool] = []
    load = server_model._load_tokenizer

    def recording_load(source: str, trust_remote_code: bool):
        loads.append(trust_remote_code)
        return load(source, trust_remote_code)

    monkeypatch.setattr(server_model, "_fetch_models", lambda *args: "ConnectError: [Errno 111] Connection refused")
    monkeypatch.setattr(server_model, "_load_tokenizer", recording_load)
    return loads


def build(tiny_model: Path, typed: str, **fixed: Any):
    from m1_models.server_model import M1Server

    args = {"base_url": "http://127.0.0.1:1", "model": "served", "tokenizer": str(tiny_model), "max_model_len": 2048}
    return M1Server.create_from_arg_obj({**args, **fixed, **cli(typed)}, {"batch_size": 1, "device": None})


# (model_args, what the model must hold, or BAD)
MODEL_ARG_CASES = [
    ("max_concurrency=4", lambda lm, loads: lm._server_settings.max_concurrency == 4),
    ("max_concurrency=4.0", lambda lm, loads: lm._server_settings.max_concurrency == 4),
    ("max_concurrency=1.5", BAD),  # was taken as 1
    ("max_concurrency=0", BAD),
    ("max_concurrency=-1", BAD),
    ("max_concurrency=true", BAD),
    ("max_concurrency=inf", BAD),
    ("max_concurrency=abc", BAD),
    ("timeout=2.5", lambda lm, loads: lm._server_settings.timeout == 2.5),
    ("timeout=60", lambda lm, loads: lm._server_settings.timeout == 60.0),
    ("timeout=inf", BAD),  # was taken
    ("timeout=nan", BAD),
    ("timeout=0", BAD),
    ("timeout=-5", BAD),
    ("timeout=true", BAD),
    ("timeout=none", BAD),
    ("max_retries=0", lambda lm, loads: lm._server_settings.max_retries == 0),
    ("max_retries=3", lambda lm, loads: lm._server_settings.max_retries == 3),
    ("max_retries=-1", BAD),
    ("max_retries=2.5", BAD),
    ("max_retries=true", BAD),
    ("max_model_len=1024", lambda lm, loads: lm.max_model_len == 1024),
    ("max_model_len=0", BAD),
    ("max_model_len=1.5", BAD),
    ("max_model_len=inf", BAD),
    ("max_model_len=abc", BAD),
    ("token_ids=text", lambda lm, loads: lm._server_settings.token_ids == "text"),
    ("token_ids=auto", lambda lm, loads: lm._server_settings.token_ids == "auto"),
    ("token_ids=both", BAD),
    ("token_ids=TEXT", BAD),
    ("trust_remote_code=yes", lambda lm, loads: loads == [True]),  # was silently False
    ("trust_remote_code=true", lambda lm, loads: loads == [True]),
    ("trust_remote_code=no", lambda lm, loads: loads == [False]),
    ("trust_remote_code=maybe", BAD),
    ("trust_remote_code=2", BAD),
    ("add_bos_token=yes", lambda lm, loads: lm.add_bos_token is True),
    ("add_bos_token=false", lambda lm, loads: lm.add_bos_token is False),
    ("add_bos_token=maybe", BAD),
    ("seed=0", lambda lm, loads: lm.seed == 0),
    ("seed=7", lambda lm, loads: lm.seed == 7),
    ("seed=-1", BAD),
    ("seed=1.5", BAD),
    ("seed=true", BAD),
    ("seed=abc", BAD),
    ("schedule=rounds", lambda lm, loads: lm.schedule == "rounds"),
    ("schedule=fast", BAD),
    ("model=7", BAD),  # a number where the served model's name belongs
    ("model=my-model", lambda lm, loads: lm.model_name == "my-model"),
    ("tokenizer=5", BAD),
    ("base_url=5", BAD),
    ("base_url=none", BAD),
    ("base_url=", BAD),
    ("base_url=localhost:8000", BAD),
    ("base_url=http://127.0.0.1:1|http://127.0.0.1:1/v1", BAD),  # the same server twice
    ("api_key=sk-x", BAD),
    ("tensor_parallel_size=2", BAD),
]


@pytest.mark.parametrize(("typed", "expected"), MODEL_ARG_CASES)
def test_m1_server_model_args_table(tiny_model, typed, expected, request):
    key = typed.partition("=")[0]
    if expected is BAD:
        request.getfixturevalue("no_network")
        with pytest.raises(ModelArgsError) as caught:
            build(tiny_model, typed)
        message = str(caught.value)
        assert "\n" not in message and key in message, message
        return
    loads = request.getfixturevalue("server_down")
    lm = build(tiny_model, typed)
    try:
        assert expected(lm, loads), typed
    finally:
        lm.close()


def test_defaults_are_the_documented_ones(tiny_model, server_down):
    lm = build(tiny_model, "")
    settings = lm._server_settings
    assert (settings.max_concurrency, settings.timeout, settings.max_retries) == (64, 3600.0, 8)
    assert settings.token_ids == "auto"
    assert (lm.seed, lm.schedule, lm.add_bos_token, server_down) == (1234, "continuous", False, [False])
    assert settings.headers == {} and lm.urls == ["http://127.0.0.1:1/v1"]
    lm.close()


# -- api_key_env: never shown ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "looks_like_a_key"),
    [
        (f"api_key_env={KEY}", True),  # a valid variable name, but a token: was echoed back in "export hf_...=..."
        ("api_key_env=sk-proj-Ab12Cd34", True),
        ("api_key_env=Bearer Ab12Cd34Ef", True),
        ("api_key_env=ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", True),
        ("api_key_env=" + "ABCDEFGHIJ" * 5, True),  # longer than a name one types
        ("api_key_env=a1b2c3d4e5f60718", True),  # lower case mixed with digits: a hex token
        ("api_key_env=123456789", True),  # a number (lm-eval makes it an int)
        ("api_key_env=M1_NO_SUCH_VARIABLE", False),  # a name, not set
        ("api_key_env=M1_EMPTY_VARIABLE", False),  # set, but empty
    ],
)
def test_an_unusable_api_key_env_is_one_line_that_does_not_show_it(tiny_model, no_network, monkeypatch, typed,
                                                                   looks_like_a_key):  # fmt: skip
    monkeypatch.delenv("M1_NO_SUCH_VARIABLE", raising=False)
    monkeypatch.setenv("M1_EMPTY_VARIABLE", "")
    value = typed.partition("=")[2]
    with pytest.raises(ModelArgsError) as caught:
        build(tiny_model, typed)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model_arg api_key_env ")
    assert value not in message and value.split()[-1] not in message, message
    assert "value not shown" in message and "api_key_env=MY_KEY" in message
    assert ("looks like a key" in message) is looks_like_a_key, message


def test_a_key_given_as_api_key_is_refused_without_showing_it(tiny_model, no_network):
    with pytest.raises(ModelArgsError, match="api_key_env=MY_KEY_VARIABLE") as caught:
        build(tiny_model, "api_key=sk-SECRET-4711")
    assert "SECRET" not in str(caught.value)


def test_api_key_env_naming_a_set_variable_sends_its_value_as_bearer(tiny_model, server_down, monkeypatch):
    monkeypatch.setenv("M1_TEST_SERVER_KEY", "sk-m1-test-SECRET-0815")
    lm = build(tiny_model, "api_key_env=M1_TEST_SERVER_KEY")
    settings = lm._server_settings
    assert settings.headers == {"Authorization": "Bearer sk-m1-test-SECRET-0815"}
    assert "SECRET" not in repr(settings) and "SECRET" not in repr(lm.backend)
    lm.close()


# -- credentials in base_url: masked everywhere ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base_url", "needle"),
    [
        (f"http://m1user:{PASSWORD}@127.0.0.1:1?x=1", "no query"),
        (f"http://127.0.0.1:1/v1?api_key={PASSWORD}", "no query"),
        (f"http://m1user:pa/{PASSWORD}@127.0.0.1:1", "not a valid address"),  # an unencoded / cuts the address
        (f"m1user:{PASSWORD}@127.0.0.1:1", r"not an http\(s\) address"),
        (f"http://m1user:{PASSWORD}@127.0.0.1:1|http://m1user:{PASSWORD}@127.0.0.1:1/v1", "names a server twice"),
    ],
)
def test_a_bad_base_url_with_a_password_is_one_line_that_masks_it(tiny_model, no_network, base_url, needle):
    with pytest.raises(ModelArgsError, match=needle) as caught:
        build(tiny_model, "", base_url=base_url)
    message = str(caught.value)
    assert "\n" not in message and PASSWORD not in message and "***" in message, message


def test_a_password_in_base_url_and_api_key_env_conflict_before_any_network_call(tiny_model, no_network,
                                                                                  monkeypatch):  # fmt: skip
    monkeypatch.setenv("M1_TEST_SERVER_KEY", "sk-m1-test-SECRET-0815")
    with pytest.raises(ModelArgsError, match="both need the Authorization header") as caught:
        build(tiny_model, "api_key_env=M1_TEST_SERVER_KEY", base_url=f"http://m1user:{PASSWORD}@127.0.0.1:1")
    assert PASSWORD not in str(caught.value) and "SECRET" not in str(caught.value)


def test_the_masks():
    from m1_models.server_model import mask_url, parse_base_url

    assert mask_url(f"http://m1user:{PASSWORD}@h:8000/v1") == "http://m1user:***@h:8000/v1"
    assert mask_url("https://TOKEN123@h") == "https://***@h"  # a user part alone is often a token
    assert mask_url("http://m1user:@h") == "http://***@h"
    assert mask_url(f"http://h:1/v1?key={PASSWORD}#x") == "http://h:1/v1?***"
    assert mask_url("http://u:p@ss:w@rd@h:1") == "http://u:***@h:1"  # everything up to the last @
    assert mask_url("http://h:8000/v1") == "http://h:8000/v1"
    [plain, secured] = parse_base_url(f"http://h:8000|https://m1user:p%40{PASSWORD}@x.y/v1/")
    assert (plain.url, plain.label, plain.credentials) == ("http://h:8000/v1", "http://h:8000/v1", None)
    assert (secured.url, secured.label) == ("https://x.y/v1", "https://m1user:***@x.y/v1")
    assert secured.credentials == ("m1user", f"p@{PASSWORD}")  # percent-decoded, as httpx decodes them
    assert PASSWORD not in repr(secured)


def test_a_password_in_base_url_is_masked_in_every_log_line_and_error(tiny_model, server_down, caplog):
    """No server answers: the warning, the start-up line and the run's final error show the address masked."""
    from lm_eval.api.instance import Instance

    caplog.set_level(logging.INFO, logger="m1_models")
    base_url = f"http://m1user:{PASSWORD}@127.0.0.1:{free_port()}|http://TOKEN{PASSWORD}@127.0.0.1:{free_port()}"
    lm = build(tiny_model, "max_retries=0", base_url=base_url)
    assert all(PASSWORD not in url for url in lm.urls)
    request = Instance("generate_until", {}, ("Hello", {"max_gen_toks": 4, "until": []}), idx=0,
                       metadata=("t", 0, 1))  # fmt: skip
    with pytest.raises(ServerError, match="no server left") as caught:
        lm.generate_until([request], disable_tqdm=True)
    engine = lm.step_engine()
    assert all(server.auth is not None for server in engine.servers)
    shown = [str(caught.value), caplog.text, repr(engine.servers), repr(lm._server_settings)]
    lm.close()
    assert "m1user:***@127.0.0.1" in caplog.text and "http://***@127.0.0.1" in caplog.text
    assert "m1user:***@127.0.0.1" in str(caught.value) or "http://***@127.0.0.1" in str(caught.value)
    for text in shown:
        assert PASSWORD not in text, text


def test_a_server_that_refuses_the_credentials_stops_before_any_request(tiny_model, monkeypatch):
    """HTTP 401 on /v1/models is one line naming the cause (it used to read as "no server answers")."""
    import httpx

    from m1_models.server_model import M1Server

    seen: list[str | None] = []

    def refusing_get(url, headers=None, auth=None, timeout=None):
        request = httpx.Request("GET", url, headers=headers)
        if auth is not None:
            request = next(auth.auth_flow(request))
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(401, json={"error": "Unauthorized"}, request=request)

    monkeypatch.setattr(httpx, "get", refusing_get)
    monkeypatch.setenv("M1_TEST_SERVER_KEY", "sk-m1-test-SECRET-0815")
    for kwargs, fix in [
        ({"base_url": "http://127.0.0.1:1", "api_key_env": "M1_TEST_SERVER_KEY"}, "not the server's"),
        ({"base_url": f"http://m1user:{PASSWORD}@127.0.0.1:1"}, "check the user:password in base_url"),
        ({"base_url": "http://127.0.0.1:1"}, "the server wants a key"),
    ]:
        with pytest.raises(ModelArgsError, match=r"refuses the credentials \(HTTP 401") as caught:
            M1Server(tokenizer=str(tiny_model), **kwargs)
        message = str(caught.value)
        assert fix in message and PASSWORD not in message and "SECRET" not in message, message
    assert seen[0] == "Bearer sk-m1-test-SECRET-0815"
    assert seen[1] is not None and seen[1].startswith("Basic ")  # the password went in the header, not the URL
    assert seen[2] is None


# -- lm-eval's own log line and results (the start-up hook's masks) -------------------------------------------------
def test_lm_eval_log_line_summary_and_results_are_masked(monkeypatch):
    import lm_eval.evaluator as evaluator

    from m1_models import server_model

    assert getattr(evaluator.simple_evaluate, "_m1_eval_patched", False), "the start-up hook is not active"
    monkeypatch.setattr(server_model, "_LOG_MASKS", {})
    base_url = f"http://m1user:{PASSWORD}@127.0.0.1:8000|http://127.0.0.1:8001"
    model_args = {"base_url": base_url, "api_key_env": KEY, "max_concurrency": 4, "model": "m"}
    server_model.guard_lm_eval_model_args(model_args)
    # the model still gets the texts; every print of the dict is masked (lm-eval's INFO line, its summary line)
    assert model_args["base_url"] == base_url and model_args["api_key_env"] == KEY
    assert json.loads(json.dumps(model_args))["base_url"] == base_url
    printed = str(model_args)
    assert PASSWORD not in printed and KEY not in printed and "m1user:***@127.0.0.1:8000" in printed
    # lm-eval's log line of a key=value string (its own dict, not ours): masked by the filter on its logger
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    level = evaluator.eval_logger.level
    evaluator.eval_logger.addHandler(handler)
    evaluator.eval_logger.setLevel(logging.INFO)
    try:
        as_text = f"base_url={base_url},api_key_env={KEY},api_key=sk-SECRET-0815"
        server_model.guard_lm_eval_model_args(as_text)
        from lm_eval.utils import simple_parse_args_string

        evaluator.eval_logger.info("Initializing m1-server model, with arguments: %s", model_args)
        evaluator.eval_logger.info(f"Initializing m1-server model, with arguments: {simple_parse_args_string(as_text)}")
    finally:
        evaluator.eval_logger.removeHandler(handler)
        evaluator.eval_logger.setLevel(level)
    assert len(lines) == 2 and all("m1user:***@127.0.0.1:8000" in line for line in lines), lines
    assert not any(secret in line for line in lines for secret in (PASSWORD, KEY, "sk-SECRET")), lines
    # the results file: config.model_args and every task's metadata (lm-eval merges the model_args into it)
    results = {
        "config": {"model": "m1-server", "model_args": model_args},
        "configs": {"t": {"task": "t", "metadata": {**dict(model_args), "version": 1}}},
        "samples": {"t": [{"resps": [["a text with m1user and nothing else"]]}]},
    }
    written = json.dumps(server_model.mask_lm_eval_results(results))
    assert PASSWORD not in written and KEY not in written, written
    assert written.count("m1user:***@127.0.0.1:8000|http://127.0.0.1:8001") == 2
    assert model_args["base_url"] == base_url  # the caller's dict still holds what the model needs


def test_a_variable_name_that_is_set_stays_visible(monkeypatch):
    from m1_models.server_model import mask_model_args

    monkeypatch.setenv("M1_TEST_SERVER_KEY", "sk-m1-test-SECRET-0815")
    monkeypatch.delenv("M1_NO_SUCH_VARIABLE", raising=False)
    assert mask_model_args({"api_key_env": "M1_TEST_SERVER_KEY"}) == {"api_key_env": "M1_TEST_SERVER_KEY"}
    assert mask_model_args({"api_key_env": "M1_NO_SUCH_VARIABLE"}) == {"api_key_env": "***"}
    assert mask_model_args("api_key_env=M1_TEST_SERVER_KEY,base_url=http://u:pw@h:1") == (
        "api_key_env=M1_TEST_SERVER_KEY,base_url=http://u:***@h:1"
    )
    assert mask_model_args({"pretrained": "gpt2", "max_length": 5}) == {"pretrained": "gpt2", "max_length": 5}


# -- the real command: one line, exit 2, no secret anywhere ---------------------------------------------------------
@pytest.mark.cli
@pytest.mark.parametrize(
    ("model_args", "needle"),
    [
        (f"api_key_env={KEY}", "model_arg api_key_env takes the NAME of an environment variable"),
        ("api_key=sk-SECRET-4711-abcdef", "does not take the key itself"),
        ("api_key_env=M1_NO_SUCH_VARIABLE", "names no environment variable that is set"),
        ("max_concurrency=1.5", "model_arg max_concurrency=1.5 must be a whole number >= 1"),
    ],
)
def test_under_lm_eval_a_secret_in_the_model_args_is_in_no_output(tiny_model, tmp_path, command_forks, model_args,
                                                                  needle):  # fmt: skip
    """lm-eval logs the model_args at INFO before it builds the model: the hook masks that line too."""
    base_url = f"http://m1user:{PASSWORD}@127.0.0.1:{free_port()}"
    args = [
        "--model", "m1-server", "--model_args", f"base_url={base_url},tokenizer={tiny_model},{model_args}",
        "--tasks", "m1_demo", "--limit", "2", "--output_path", "out", "--log_samples", "--verbosity", "INFO",
    ]  # fmt: skip
    result = command_forks.run("lm_eval", args, cwd=tmp_path, env={"M1_NO_SUCH_VARIABLE": ""})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("lm_eval: error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "Initializing m1-server model" in result.stderr and "m1user:***@127.0.0.1" in result.stderr
    secrets = [PASSWORD, KEY, "SECRET-4711"]
    for output in (result.stdout, result.stderr):
        assert not [secret for secret in secrets if secret in output], output[-3000:]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert not [secret for secret in secrets if secret.encode() in path.read_bytes()], path


@pytest.mark.cli
@pytest.mark.parametrize(
    ("model_args", "shown"),
    [
        (f"base_url=http://m1user:{PASSWORD}@127.0.0.1:1,base_url=http://m1user:{PASSWORD}@127.0.0.1:2",
         "base_url is given 2 times (http://m1user:***@127.0.0.1:1, http://m1user:***@127.0.0.1:2)"),
        (f"base_url=http://127.0.0.1:1,api_key_env={KEY},api_key_env=M1_NO_SUCH_VARIABLE",
         "api_key_env is given 2 times (***, ***)"),
    ],
)  # fmt: skip
def test_a_secret_given_twice_is_masked_in_the_error_line(tmp_path, command_forks, model_args, shown):
    args = ["--model", "m1-server", "--model_args", model_args, "--tasks", "m1_demo"]
    result = command_forks.run("lm_eval", args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and shown in errors[0], result.stderr[-3000:]
    assert PASSWORD not in result.stderr + result.stdout and KEY not in result.stderr + result.stdout
