# Sourced by the tests/cli_*.sh scripts: a scratch folder $dir removed on exit, check counters,
# expect_error, and the closing line. Set `name` before sourcing.
dir=$(mktemp -d "/tmp/dm_${name}_XXXXXX")
trap 'rm -rf "$dir"' EXIT
fails=0; checks=0
check() { # check DESCRIPTION COMMAND...: the command succeeds; its stdout stays in $dir/out,
           # its stderr in $dir/err (a script with other needs defines its own after sourcing)
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@" > "$dir/out" 2> "$dir/err"; then
        echo "FAIL: $what: '$*': $(head -c 2000 "$dir/out") $(head -c 2000 "$dir/err")"
        fails=$((fails + 1))
    fi
}
expect() { # expect DESCRIPTION AWK-CONDITION NAME=VALUE...: the condition holds for the values
    local what=$1 cond=$2; shift 2
    checks=$((checks + 1))
    local args=() v
    for v in "$@"; do args+=(-v "$v"); done
    if ! awk "${args[@]}" "BEGIN { exit !($cond) }"; then
        echo "FAIL: $what: $cond with $*"; fails=$((fails + 1))
    fi
}
expect_error() { # expect_error PATTERN COMMAND...: non-zero exit and PATTERN in stderr
    local pattern=$1; shift
    checks=$((checks + 1))
    "$@" > "$dir/out" 2> "$dir/err"
    local rc=$?
    if [ $rc -eq 0 ] || ! grep -q -- "$pattern" "$dir/err"; then
        echo "FAIL: '$*' exited $rc; stderr: $(cat "$dir/err"); expected /$pattern/"
        fails=$((fails + 1))
    fi
}
# JSON checks with jq (scripts/install-deps.sh installs it): jq's own filters, and finite: a
# number that is neither infinite nor NaN (the CLI writes those as null, which is no number)
jq_defs='def finite: type == "number" and (isinfinite or isnan | not);'
holds() { # holds DESCRIPTION FILE JQ-FILTER: FILE is one JSON value and the filter gives true on it
    local what=$1 file=$2 filter=$3
    checks=$((checks + 1))
    if ! jq -e -s "$jq_defs length == 1 and (.[0] | $filter)" "$file" > /dev/null 2>&1; then
        echo "FAIL: $what: $filter does not hold for $file: $(head -c 1500 "$file")"
        fails=$((fails + 1))
    fi
}
lines_hold() { # lines_hold DESCRIPTION FILE JQ-FILTER: every line of FILE parses as JSON, and the
               # filter gives true on the array of them
    local what=$1 file=$2 filter=$3
    checks=$((checks + 1))
    if ! jq -e -R -s "$jq_defs rtrimstr(\"\n\") | split(\"\n\") | map(fromjson) | $filter" "$file" \
           > /dev/null 2>&1; then
        echo "FAIL: $what: $filter does not hold for $file: $(head -c 1500 "$file")"
        fails=$((fails + 1))
    fi
}
finish() { # prints the closing line; the script's exit status
    echo "$((checks - fails)) passed, $fails failed"
    [ $fails -eq 0 ]
}
