#!/bin/sh
# A Flowmetal sequence worker in POSIX shell, with curl and jq.
#
#     FLOWMETAL_TOKEN=fm_... sh worker.sh SERVER NAME TYPE [TYPE...]
#
# SERVER is a control plane (flowmetal serve), e.g. http://127.0.0.1:8400; NAME names
# this worker in locks and listings; the TYPEs are the task types it serves, of these:
#
#   evaluate    judges what the enrich tasks found (data.extract-metadata, .geolookup,
#               .author-search): pass when all three did, warning for two, else fail;
#               the output is {"score": 0-100, "checks": {...}}.
#   deployment  deploys data.configurationChange.values.image (Keptn's place for it)
#               with the task's deploymentstrategy property (default direct); no image
#               fails the task.
#   release     releases what the deployment task deployed.
#   rollback    rolls back the image a failed delivery deployed.
#
# The loop: a long-polling claim (POST /api/v1/task-events/claim, which locks each event
# to this worker), then for each sh.keptn.event.<task>.triggered event a .started, the
# work (FLOWMETAL_WORK_SECONDS, default 0, with a .status.changed heartbeat every third
# of the lock meanwhile), and a .finished with result, status and the output under
# data.<task>.  A 409 (the lock expired, another worker has the task) or a 410 (the run
# was paused or aborted, or timed out) abandons the task.  FLOWMETAL_LOCK_SECONDS (default
# 30) is how long a lock lasts, FLOWMETAL_WAIT_SECONDS (default 20) how long a claim
# waits for work.  Each thing it does is a line on standard output, as worker.py's.
set -u

if [ $# -lt 3 ]; then
    echo "usage: worker.sh SERVER NAME TYPE [TYPE...]" >&2
    exit 2
fi
server=${1%/}
name=$2
shift 2
for t in "$@"; do
    case $t in
        evaluate|deployment|release|rollback) ;;
        *) echo "worker.sh: no task type $t (evaluate, deployment, release, rollback)" >&2
           exit 2 ;;
    esac
done
: "${FLOWMETAL_TOKEN:?set FLOWMETAL_TOKEN to a token (flowmetal token create)}"
lock_seconds=${FLOWMETAL_LOCK_SECONDS:-30}
wait_seconds=${FLOWMETAL_WAIT_SECONDS:-20}
work_seconds=${FLOWMETAL_WORK_SECONDS:-0}
beat_every=$((lock_seconds / 3))
[ "$beat_every" -ge 1 ] || beat_every=1
types=$(jq -cn '$ARGS.positional' --args "$@")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
sent=0

say() { printf '%s: %s\n' "$name" "$*"; }

# post PATH FILE TIMEOUT: the HTTP status on stdout, the response body in $tmp/response.
post() {
    curl -sS -o "$tmp/response" -w '%{http_code}' --max-time "$3" -X POST \
        -H "Authorization: Bearer $FLOWMETAL_TOKEN" -H 'Content-Type: application/json' \
        --data-binary "@$2" "$server$1"
}

# answer PHASE DATA-FILE: post sh.keptn.event.<task>.<phase> answering $tmp/event;
# true when it was taken, else it says why and the task is abandoned.
answer() {
    sent=$((sent + 1))
    jq -n --slurpfile t "$tmp/event" --slurpfile d "$2" --arg phase "$1" \
        --arg id "$name-$$-$sent" --arg lock "$lock" --arg task "$task" \
        --argjson seconds "$lock_seconds" \
        '{specversion: "1.0", id: $id, source: "worker.sh",
          type: "sh.keptn.event.\($task).\($phase)", triggeredid: $t[0].id,
          shkeptncontext: $t[0].shkeptncontext, flowmetallock: $lock,
          flowmetallockseconds: $seconds, datacontenttype: "application/json",
          data: $d[0]}' > "$tmp/answer"
    code=$(post /api/v1/event "$tmp/answer" 30) || code=000
    [ "$code" = 200 ] && return 0
    say "abandoned $task $eid ($code: $(jq -r '.detail // empty' "$tmp/response" \
        2>/dev/null))"
    return 1
}

# The tasks: the triggered event in $tmp/event -> the .finished data on stdout.
evaluate() {
    jq '.data as $d
        | [$d["extract-metadata"].words != null, $d.geolookup.lat != null,
           $d["author-search"].id != null] as $c
        | ($c | map(select(.)) | length) as $n
        | {result: (if $n == 3 then "pass" elif $n == 2 then "warning" else "fail" end),
           status: "succeeded", message: "\($n) of 3 enrichments found",
           evaluate: {score: ($n * 100 / 3 | floor),
                      checks: {metadata: $c[0], place: $c[1], author: $c[2]}}}' \
        "$tmp/event"
}

deployment() {
    jq '.data as $d | ($d.configurationChange.values.image // null) as $image
        | ($d.deployment.deploymentstrategy // "direct") as $strategy
        | if $image == null then
            {result: "fail", status: "succeeded",
             message: "no image to deploy (data.configurationChange.values.image)"}
          else
            {result: "pass", status: "succeeded",
             message: "deployed \($image) (\($strategy))",
             deployment: {image: $image, deploymentstrategy: $strategy,
                          deploymentNames: ["\($d.service)-\($d.stage)"],
                          deploymentURIsLocal:
                            ["http://\($d.service).\($d.project)-\($d.stage)"]}}
          end' "$tmp/event"
}

release() {
    jq '.data as $d
        | {result: "pass", status: "succeeded",
           message: "released \($d.deployment.image // "nothing")",
           release: {image: ($d.deployment.image // null)}}' "$tmp/event"
}

rollback() {
    jq '.data as $d
        | {result: "pass", status: "succeeded",
           message: "rolled back \($d.service) in \($d.stage)",
           rollback: {service: $d.service, stage: $d.stage,
                      image: ($d.deployment.image // null),
                      reason: ($d.message // null)}}' "$tmp/event"
}

# work SECONDS: wait that long, with a heartbeat every beat_every seconds.
work() {
    left=$1
    beats=0
    while [ "$left" -gt 0 ]; do
        step=$beat_every
        [ "$step" -le "$left" ] || step=$left
        sleep "$step"
        left=$((left - step))
        beats=$((beats + 1))
        jq -n --arg m "working ($beats)" '{message: $m}' > "$tmp/beat"
        answer status.changed "$tmp/beat" || return 1
    done
}

say "serving $* from $server"
jq -n --arg w "$name" --argjson types "$types" --argjson lock "$lock_seconds" \
    --argjson wait "$wait_seconds" \
    '{worker: $w, types: $types, max: 1, lockSeconds: $lock, waitSeconds: $wait}' \
    > "$tmp/claim"
echo '{}' > "$tmp/empty"
while :; do
    if ! code=$(post /api/v1/task-events/claim "$tmp/claim" $((wait_seconds + 30))); then
        say "$server is unreachable; trying again"
        sleep 1
        continue
    fi
    case $code in
        200) ;;
        4*) say "the claim was refused ($code: $(jq -r '.detail // empty' \
                "$tmp/response" 2>/dev/null))"
            exit 1 ;;
        *) sleep 1
           continue ;;
    esac
    [ "$(jq '.events | length' "$tmp/response")" -gt 0 ] || continue
    jq '.events[0].event' "$tmp/response" > "$tmp/event"
    lock=$(jq -r '.events[0].lock' "$tmp/response")
    eid=$(jq -r '.id' "$tmp/event")
    task=$(jq -r '.type | ltrimstr("sh.keptn.event.") | rtrimstr(".triggered")' \
        "$tmp/event")
    answer started "$tmp/empty" || continue
    say "started $task $eid (lock $lock)"
    case $task in
        evaluate) evaluate ;;
        deployment) deployment ;;
        release) release ;;
        rollback) rollback ;;
    esac > "$tmp/finished" || {
        jq -n --arg m "the $task task failed in the shell" \
            '{result: "fail", status: "errored", message: $m}' > "$tmp/finished"
    }
    work "$work_seconds" || continue
    answer finished "$tmp/finished" || continue
    say "finished $task $eid $(jq -r .result "$tmp/finished")"
done
