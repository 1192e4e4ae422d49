"""What runs: the image's defaults, command and args overrides, environment.

Each replica checks its own view with a small shell script and exits 0 only
if what it sees is right; the exit code is the verdict, the output (when the
driver has logs) is there for the failure message.
"""

from __future__ import annotations

from portway.capabilities.vocabulary import Feature

from .case import DEFAULT_IMAGE_TEXT, HTTP_PORT, IMAGE_PATH, Context, case
from .failures import expect


@case(
    "command.image_defaults",
    "without command and args the image's own entrypoint and command run",
    features=(Feature.PORTS_TCP,),
)
def image_defaults(ctx: Context) -> None:
    handle = ctx.run({"ports": [{"containerPort": HTTP_PORT}]})
    status = ctx.wait_running(handle)
    body = ctx.http_get(ctx.published_port(status, HTTP_PORT))
    expect(
        DEFAULT_IMAGE_TEXT in body,
        f"the image's default command (httpd) should serve {DEFAULT_IMAGE_TEXT!r}; got {body!r}",
    )


@case(
    "command.command_override",
    "command replaces the image entrypoint",
    features=(Feature.COMMAND,),
)
def command_override(ctx: Context) -> None:
    ctx.expect_exit({"command": ["sh", "-c", "exit 7"]}, 7, "command sh -c 'exit 7'")


@case(
    "command.command_drops_image_args",
    "command without args does not append the image's CMD (as Kubernetes and Docker)",
    features=(Feature.COMMAND,),
)
def command_drops_image_args(ctx: Context) -> None:
    # with the image's CMD appended, $0 would be "httpd" and $# would be 5
    script = 'echo "argv0=$0 argc=$#"; [ "$0" = sh ] && [ "$#" -eq 0 ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script]}, 0, "the image's CMD must not follow a command"
    )


@case(
    "command.args_override",
    "args replace the image command",
    features=(Feature.ARGS,),
)
def args_override(ctx: Context) -> None:
    ctx.expect_exit({"args": ["sh", "-c", "exit 9"]}, 9, "args sh -c 'exit 9'")


@case(
    "command.command_and_args",
    "args follow command as its arguments, in order",
    features=(Feature.COMMAND, Feature.ARGS),
)
def command_and_args(ctx: Context) -> None:
    script = 'echo "args: $*"; [ "$1" = one ] && [ "$2" = "two words" ] && [ "$#" -eq 2 ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script, "sh"], "args": ["one", "two words"]},
        0,
        "args ['one', 'two words'] after command",
    )


@case("command.env_set", "env sets environment variables", features=(Feature.ENV,))
def env_set(ctx: Context) -> None:
    script = 'echo "PW_GREETING=$PW_GREETING PW_EMPTY=[$PW_EMPTY]"; '
    script += '[ "$PW_GREETING" = hello ] && [ "${PW_EMPTY-unset}" = "" ]'
    ctx.expect_exit(
        {
            "command": ["sh", "-c", script],
            "env": {"PW_GREETING": "hello", "PW_EMPTY": ""},
        },
        0,
        "env PW_GREETING=hello and PW_EMPTY set to the empty string",
    )


@case(
    "command.env_literal",
    "env values arrive verbatim: spaces, quotes, '$' and '=' are not interpreted",
    features=(Feature.ENV,),
)
def env_literal(ctx: Context) -> None:
    value = "a b  $HOME \"q\" 'r' x=y $(nope) `nope`"
    # compare against the same text held in a second channel: an argument
    script = 'printf "got: %s\\n" "$PW_LITERAL"; [ "$PW_LITERAL" = "$1" ]'
    ctx.expect_exit(
        {
            "command": ["sh", "-c", script, "sh", value],
            "env": {"PW_LITERAL": value},
        },
        0,
        f"env PW_LITERAL={value!r}",
    )


@case(
    "command.env_expansion",
    "a shell command expands the replica's variables (sh -c)",
    features=(Feature.ENV, Feature.COMMAND),
)
def env_expansion(ctx: Context) -> None:
    script = 'greeting="$PW_A-$PW_B"; echo "$greeting"; [ "$greeting" = one-two ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "env": {"PW_A": "one", "PW_B": "two"}},
        0,
        "sh -c expanding $PW_A-$PW_B",
    )


@case(
    "command.image_env_kept",
    "setting env keeps the image's own environment (PATH)",
    features=(Feature.ENV,),
)
def image_env_kept(ctx: Context) -> None:
    script = f'echo "PATH=$PATH"; [ "$PATH" = "{IMAGE_PATH}" ] && [ "$PW_X" = x ]'
    ctx.expect_exit(
        {"command": ["/bin/sh", "-c", script], "env": {"PW_X": "x"}},
        0,
        "the image's PATH next to env PW_X",
    )
