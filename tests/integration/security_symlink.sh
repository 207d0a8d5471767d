#!/usr/bin/env bash
# Output files are created without following symlinks and replaced atomically: when the
# output path is a symlink (to a file of value, or dangling, as an attacker who can
# write the directory would plant), the command replaces the link itself with a regular
# file; the link's target is neither written nor truncated nor created.  An existing
# regular output file is replaced whole (a new inode), never rewritten in place.
set -u
. "$(dirname "$0")/lib/adg.sh"

REC="$TEST_TMP/in.json"
"$AMXDIAG" profile -q -o "$REC" -- true >/dev/null 2>&1 || skip "amxdiag profile cannot record here (needed for the report input)"

write_cmd() {
    local name=$1 out=$2
    case "$name" in
        snapshot) "$AMXDIAG" probe --only cpu --save-snapshot "$out" ;;
        model) "$AMXDIAG" model create --preset tiny --sparse "$out" ;;
        profile) "$AMXDIAG" profile -q -o "$out" -- true ;;
        report) "$AMXDIAG" report "$REC" -o "$out" ;;
    esac
}

D="$TEST_TMP/out"
mkdir -p "$D"
for w in snapshot model profile report; do
    # a symlink to a file that must stay untouched
    echo "precious $w" >"$TEST_TMP/victim-$w"
    ln -sf "$TEST_TMP/victim-$w" "$D/$w.out"
    write_cmd "$w" "$D/$w.out" >/dev/null 2>"$TEST_TMP/err"
    rc=$?
    [ "$rc" -le 1 ] || fail "$w through a symlink: exit $rc: $(head -c 300 "$TEST_TMP/err")"
    [ "$(cat "$TEST_TMP/victim-$w")" = "precious $w" ] || fail "$w wrote through the symlink into its target"
    [ -L "$D/$w.out" ] && fail "$w left the symlink in place (wrote through it?)"
    [ -f "$D/$w.out" ] && [ -s "$D/$w.out" ] || fail "$w: no regular output file replaced the symlink"

    # a dangling symlink: its target must not be created
    rm -f "$D/$w.out"
    ln -s "$TEST_TMP/created-$w" "$D/$w.out"
    write_cmd "$w" "$D/$w.out" >/dev/null 2>"$TEST_TMP/err"
    [ -e "$TEST_TMP/created-$w" ] && fail "$w created the target of a dangling symlink"
    [ -L "$D/$w.out" ] && fail "$w left the dangling symlink in place"

    # an existing file is replaced by rename (new inode), so a reader of the old file
    # (or a hard link to it) never sees a half-written one
    ln "$D/$w.out" "$TEST_TMP/hardlink-$w"
    old=$(stat -c %i "$D/$w.out")
    cp "$D/$w.out" "$TEST_TMP/copy-$w"
    write_cmd "$w" "$D/$w.out" >/dev/null 2>&1
    new=$(stat -c %i "$D/$w.out")
    [ "$old" != "$new" ] || fail "$w rewrote its output in place (same inode)"
    cmp -s "$TEST_TMP/hardlink-$w" "$TEST_TMP/copy-$w" || fail "$w modified the old file through its hard link"
done
# nothing but the outputs is left in the directory (no temporaries)
left=$(ls -A "$D" | grep -v '\.out$')
[ -z "$left" ] || fail "temporaries left behind: $left"
finish
