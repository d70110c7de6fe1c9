# Sourced by the tests/cli_*.sh scripts: a scratch folder $dir removed on exit, check counters,
# expect_error, and the closing line. Set `name` before sourcing.
dir=$(mktemp -d "/tmp/dm_${name}_XXXXXX")
trap 'rm -rf "$dir"' EXIT
fails=0; checks=0
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
finish() { # prints the closing line; the script's exit status
    echo "$((checks - fails)) passed, $fails failed"
    [ $fails -eq 0 ]
}
