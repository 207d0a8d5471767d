# Driving `amxdiag top` in tmux for the integration tests (sourced after lib/adg.sh).
# tmux_setup NAME: a private tmux server (socket NAME$$) with an idle session that keeps it
# up between the windows under test (a server whose last session ends exits, and a new one
# started at that moment can fail); the test's EXIT trap also kills the server.  The
# window under test is the session "top", started by each test's own start().
tmux_setup() {
    SOCK="$1$$"
    trap 'T kill-server 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
    T new-session -d -s keep "sleep 300"
}
T() { tmux -L "$SOCK" "$@"; }
screen() { T capture-pane -p -t top; }
# wait_for REGEX [SECONDS]: until the screen matches (default 5 s); a failure shows the screen.
wait_for() {
    local re=$1 n=$(( ${2:-5} * 10 ))
    for _ in $(seq "$n"); do
        screen | grep -Eq -- "$re" && return 0
        sleep 0.1
    done
    fail "screen never showed /$re/:"
    screen >&2
    return 1
}
# wait_exit [SECONDS]: until the window's command wrote its exit status to $TEST_TMP/exit.
wait_exit() {
    for _ in $(seq "$(( ${1:-5} * 10 ))"); do [ -s "$TEST_TMP/exit" ] && return 0; sleep 0.1; done
    fail "amxdiag top did not exit"
    return 1
}
