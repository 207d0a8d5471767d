#!/usr/bin/env bash
# Every command that writes a file, when the write cannot succeed: a directory that
# does not exist, a read-only (or permission-denied) directory, a full file system
# (a small tmpfs when this test may mount one), a file-size limit (RLIMIT_FSIZE), and an
# output path that is a directory.  Each must exit 2 with a message naming the file and
# leave nothing behind (no partial file, no temporary).
set -u
. "$(dirname "$0")/lib/adg.sh"

REC="$TEST_TMP/in.json"
"$AMXDIAG" profile -q -o "$REC" -- true >/dev/null 2>&1 || skip "amxdiag profile cannot record here (needed for the report input)"
[ -f "$REC" ] || skip "amxdiag profile wrote no record"

# writers NAME OUT: runs one writing command with OUT as its output file.
write_cmd() {
    local name=$1 out=$2
    case "$name" in
        snapshot) "$AMXDIAG" probe --only cpu --save-snapshot "$out" ;;
        model) "$AMXDIAG" model create --preset tiny "$out" ;;
        profile) "$AMXDIAG" profile -q -o "$out" -- true ;;
        report) "$AMXDIAG" report "$REC" -o "$out" ;;
        report-html) "$AMXDIAG" report "$REC" --format html -o "$out" ;;
    esac
}
WRITERS="snapshot model profile report report-html"

# check_fails NAME DIR FILE [RUNNER...]: the command exits 2, says "error" and names the
# file, and DIR holds nothing new afterwards.
check_fails() {
    local name=$1 dir=$2 file=$3; shift 3
    local before after rc
    before=$(ls -A "$dir" 2>/dev/null | sort)
    "$@" bash -c "$(declare -f write_cmd); AMXDIAG='$AMXDIAG' REC='$REC' write_cmd $name '$dir/$file'" \
        >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    rc=$?
    after=$(ls -A "$dir" 2>/dev/null | sort)
    [ "$rc" -eq 2 ] || fail "$name into $dir/$file ($*): exit $rc, expected 2; stderr: $(head -c 300 "$TEST_TMP/err")"
    grep -q "error" "$TEST_TMP/err" || fail "$name into $dir/$file: no error message: $(head -c 300 "$TEST_TMP/err")"
    grep -q "$file" "$TEST_TMP/err" || fail "$name into $dir/$file: the message does not name the file: $(head -c 300 "$TEST_TMP/err")"
    [ "$before" = "$after" ] || fail "$name into $dir/$file ($*) left files behind: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
}

# --- a directory that does not exist
for w in $WRITERS; do
    check_fails "$w" "$TEST_TMP/no/such/dir" out.bin
done

# --- the output path is a directory
mkdir -p "$TEST_TMP/isdir/out.bin"
for w in $WRITERS; do
    check_fails "$w" "$TEST_TMP/isdir" out.bin
done

# --- a directory this user cannot write: a read-only tmpfs as root, mode 0555 otherwise
RO="$TEST_TMP/ro"
FULL="$TEST_TMP/full"
mkdir -p "$RO" "$FULL"
# a test killed half-way must not leave its mounts behind
trap 'umount "$RO" "$FULL" 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
ro_kind=""
if [ "$(id -u)" -eq 0 ]; then
    mount -t tmpfs -o ro,size=64k tmpfs "$RO" 2>/dev/null && ro_kind="read-only tmpfs"
else
    chmod 0555 "$RO" && ro_kind="mode 0555"
fi
if [ -n "$ro_kind" ]; then
    for w in $WRITERS; do
        check_fails "$w" "$RO" out.bin
    done
    [ "$(id -u)" -eq 0 ] && umount "$RO"
else
    echo "note: no read-only directory here (mount refused): that case is not tested"
fi

# --- a full file system: a 64 KiB tmpfs, filled first (root only)
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=64k tmpfs "$FULL" 2>/dev/null; then
    head -c 60000 /dev/zero >"$FULL/filler" 2>/dev/null
    # what is left is smaller than any writer's output
    for w in $WRITERS; do
        check_fails "$w" "$FULL" out.bin
    done
    umount "$FULL"
else
    echo "note: cannot mount a tmpfs here: the full-disk case runs with RLIMIT_FSIZE only"
fi

# --- a file-size limit: writes fail with EFBIG (amxdiag handles SIGXFSZ, which would
# otherwise kill it mid-write)
if command -v prlimit >/dev/null; then
    mkdir -p "$TEST_TMP/fsize"
    for w in $WRITERS; do
        check_fails "$w" "$TEST_TMP/fsize" out.bin prlimit --fsize=400
    done
else
    echo "note: prlimit missing: the RLIMIT_FSIZE case is not tested"
fi

# --- the same commands succeed where they can write (the failures above are real)
mkdir -p "$TEST_TMP/ok"
for w in $WRITERS; do
    write_cmd "$w" "$TEST_TMP/ok/$w.out" >/dev/null 2>"$TEST_TMP/err"
    rc=$?
    [ "$rc" -le 1 ] && [ -s "$TEST_TMP/ok/$w.out" ] || fail "$w into a writable directory: exit $rc: $(head -c 300 "$TEST_TMP/err")"
done
finish
