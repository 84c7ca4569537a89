# Background processes that can be stopped whole, for scripts/image-check.sh (sourced; bash).
#
# A command started in the background through a wrapper (a function, chroot, env, sh) leaves `$!`
# naming the wrapper: killing it leaves the real process and its children (an app's workers, a
# Dask nanny's worker) running. Here every background command leads a session and process group of
# its own (setsid), so the whole tree is signalled at once, and what runs inside a chroot can be
# found afterwards by its root folder, whatever it did to its process group.
#
#   start_group LOG CMD...   run CMD in the background as a new session; its id in STARTED
#   stop_groups ID...        SIGTERM each group, SIGKILL what is left after STOP_GRACE seconds
#   group_members ID         live (not zombie) processes of a process group, one id a line
#   rooted_in DIR            live processes whose root folder is DIR (chroot), one id a line
#   describe PID...          "PID command" lines, for messages

STOP_GRACE=${STOP_GRACE:-20}

start_group() {
    local log=$1
    shift
    setsid "$@" >"$log" 2>&1 &
    STARTED=$!  # setsid execs CMD: the same process, the leader of its session and group
}

_state_and_group() {  # _state_and_group PID: sets STATE and PGRP of a process; fails when gone
    local stat fields
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    # shellcheck disable=SC2206
    fields=(${stat##*) })  # after the command name, which may hold spaces and parentheses
    STATE=${fields[0]} PGRP=${fields[2]}
}

group_members() {
    local p
    for p in /proc/[0-9]*; do
        _state_and_group "${p#/proc/}" || continue
        [[ $STATE != Z && $PGRP == "$1" ]] && echo "${p#/proc/}"
    done
    return 0
}

rooted_in() {
    local root p
    root=$(readlink -f "$1")
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/root" 2>/dev/null) == "$root" ]] || continue
        _state_and_group "${p#/proc/}" && [[ $STATE != Z ]] && echo "${p#/proc/}"
    done
    return 0
}

describe() {
    local p
    for p in "$@"; do
        printf '%s %s\n' "$p" "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)"
    done
}

stop_groups() {
    local g left i
    [[ $# -gt 0 ]] || return 0
    for g in "$@"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for ((i = 0; i < STOP_GRACE * 4; i++)); do
        left=""
        for g in "$@"; do left+=$(group_members "$g"); done
        [[ -z "$left" ]] && break
        sleep 0.25
    done
    for g in "$@"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    wait "$@" 2>/dev/null || true  # reap the leaders (our children)
    return 0
}
