#!/usr/bin/env bash
# amxdiag against its peers on the AMX machine, in one call: the same synthetic GGUF files
# (written here by `amxdiag model create`), the same threads, the same machine, one run.
#  1. qwen3-moe-small (or $PRESET) in each of $QUANTS (default q4_0 q8_0), created on the machine;
#  2. amxdiag run -p 512 -n 128 -r 3 with --cpu-kernels amx and avx512;
#  3. llama-bench -p 512 -n 128 -r 3 of llama.cpp with AMX, the same binary with AMX blocked
#     (noamx: a seccomp filter makes ARCH_REQ_XCOMP_PERM fail, so ggml's AMX buffer type is
#     never registered and its AVX-512 path runs), a separate AVX-512 build when given, and
#     ik_llama.cpp with its defaults and with -rtr 1 (run-time repacking);
#  4. greedy decoding of a 64-token prompt, the same token ids, with amxdiag (amx, avx512)
#     and with the peers' greedy tools when given (their load log shows which buffer types
#     took the weights, e.g. "AMX model buffer size").
# The peers are built elsewhere (this repository holds none of their code); PEERDIR holds
# the already-built binaries:
#   llama-bench        llama.cpp, built with its AMX options      (required)
#   ik-llama-bench     ik_llama.cpp                               (optional)
#   llama-bench-avx512 llama.cpp built without AMX                (optional)
#   llama-bench-cuda   llama.cpp built with CUDA (sm_90), run at each of $NGLS (optional;
#                      its libcudart/libcublas come from /usr/local/cuda/lib64 there)
#   llama-bench-clang  llama.cpp with AMX built by clang: GCC 12 drops the stores of the tile
#                      configuration (SIGILL at the first AMX matmul; `amxdiag probe --binary`
#                      says so), clang does not                    (optional)
#   greedy-llama, greedy-ik  a tool that loads MODEL, evaluates the prompt of
#                      `amxdiag run --greedy` (same generator, same seed), then decodes
#                      N_GEN tokens feeding back the ids in $FORCE (teacher forcing: amxdiag
#                      amx's tokens) and prints its own argmax at each step with the gap to
#                      its runner-up (GAPS=1), usage: TOOL MODEL N_PROMPT N_GEN SEED THREADS
#                      (optional)
#   noamx              the seccomp wrapper (optional: built from the source below with cc)
#   VERSIONS           commits and build flags, copied into the summary (optional)
# Usage: tests/device/peers.sh PEERDIR AMXDIAG_DIR [OUT_DIR]
#   AMXDIAG_DIR holds amxdiag (and devlibs/ from tests/device/bundle-libs.sh). Either may be
#   a .tar.xz of such a directory. Paths may be relative to the current directory.
# Env: THREADS (default nproc), QUANTS, PRESET (default qwen3-moe-small; e.g. qwen3-30b-a3b with
#   LAYERS=12: the 30B shapes in 4.3 GiB at q4_0), NGLS (e.g. "4 99": amxdiag runs with those
#   layers on the GPU too), LAYERS (a smaller model, to check the script
#   elsewhere), PROMPT (512), GEN (128), REPS (3), TIMEOUT (per benchmark, 90 s).
# Output in OUT_DIR (default $OUT, else ./peers-out), at most 6 files: summary.md (the
# table and every step's status), peers.log (all output), greedy.txt.
set -u
peers=${1:?usage: tests/device/peers.sh PEERDIR AMXDIAG_DIR [OUT_DIR]}
adir=${2:?usage: tests/device/peers.sh PEERDIR AMXDIAG_DIR [OUT_DIR]}
out=${3:-${OUT:-./peers-out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/amxdiag-peers-XXXXXX)
trap 'rm -rf "$work"' EXIT
# PEERDIR and AMXDIAG_DIR may also be .tar.xz archives of such a directory (static peer
# binaries are large; compressed they fit the 64 MiB a device call carries).
unpack() {   # unpack PATH NAME: prints a directory
    if [ -f "$1" ]; then
        mkdir -p "$work/$2" && tar -xJf "$1" -C "$work/$2" && echo "$work/$2"
    else
        cd "$1" && pwd
    fi
}
peers=$(unpack "$peers" peers) || { echo "peers.sh: cannot read PEERDIR $1" >&2; exit 2; }
adir=$(unpack "$adir" amxdiag) || { echo "peers.sh: cannot read AMXDIAG_DIR $2" >&2; exit 2; }
[ -d "$adir/devlibs" ] && export LD_LIBRARY_PATH="$adir/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$adir/amxdiag"
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.md"
log="$out/peers.log"
greedy="$out/greedy.txt"
: >"$summary"
: >"$log"
: >"$greedy"
threads=${THREADS:-$(nproc)}
quants=${QUANTS:-q4_0 q8_0}
layers_opt=${LAYERS:+--layers $LAYERS}
preset=${PRESET:-qwen3-moe-small}
prompt=${PROMPT:-512}
gen=${GEN:-128}
reps=${REPS:-3}
limit=${TIMEOUT:-90}

say() { echo "$*" | tee -a "$summary"; }

step() {   # step NAME LIMIT CMD...: runs CMD bounded, output in $work/step.out and the log
    local name=$1 lim=$2; shift 2
    local t0 t1 rc
    t0=$(date +%s%N)
    echo "===== $name: $*" >>"$log"
    timeout -k 5 "$lim" "$@" >"$work/step.out" 2>&1
    rc=$?
    t1=$(date +%s%N)
    cat "$work/step.out" >>"$log"
    printf -- '- %-40s rc=%-3s %6d ms\n' "$name" "$rc" "$(( (t1 - t0) / 1000000 ))" >>"$summary"
    return $rc
}

# t/s of test $1 (pp512, tg128) in a llama-bench style markdown table: "mean ± sd"
rate() {
    grep -E "^\|.*\| +$1 +\|" "$work/step.out" | tail -1 | awk -F'|' '{gsub(/^ +| +$/, "", $(NF-1)); print $(NF-1)}'
}

declare -A result   # result[quant,engine,test]

bench_rows() {   # bench_rows QUANT ENGINE: records pp/tg of the last step
    result[$1,$2,pp]=$(rate "pp$prompt")
    result[$1,$2,tg]=$(rate "tg$gen")
    grep -E "^\|" "$work/step.out" | sed 's/^/    /' >>"$summary"
}

{
    echo "# peers.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs),"\
         "amx flags: $(grep -m1 -o -w 'amx_[a-z0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "threads: $threads, models: $preset ${LAYERS:+(--layers $LAYERS) }$quants," \
         "pp$prompt / tg$gen, $reps repetitions"
    if [ -f "$peers/VERSIONS" ]; then
        echo
        sed 's/^/    /' "$peers/VERSIONS"
    fi
    echo
} | tee -a "$summary"

# The seccomp wrapper: built here unless PEERDIR brings one.
noamx="$peers/noamx"
if [ ! -x "$noamx" ]; then
    noamx="$work/noamx"
    cat >"$work/noamx.c" <<'EOF'
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
/* noamx CMD ARGS...: CMD runs with arch_prctl(ARCH_REQ_XCOMP_PERM) failing with EPERM. */
int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_arch_prctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x1023, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("noamx: seccomp");
        return 2;
    }
    execvp(argv[1], argv + 1);
    perror("noamx: exec");
    return 2;
}
EOF
    cc -O2 -o "$noamx" "$work/noamx.c" 2>>"$log" || noamx=""
fi
[ -n "$noamx" ] || say "(no noamx wrapper: no C compiler here and none in PEERDIR; the AMX-blocked row is skipped)"

for q in $quants; do
    model="$work/small-$q.gguf"
    say "## $preset $q"
    if ! step "model create $q" 120 "$amx" model create --preset "$preset" $layers_opt --quant "$q" \
        --threads "$threads" "$model"; then
        say "(model create failed: see peers.log)"
        continue
    fi
    for impl in amx avx512; do
        if step "amxdiag $impl" "$limit" "$amx" run -m "$model" -p "$prompt" -n "$gen" -r "$reps" -t "$threads" \
            --cpu-kernels "$impl"; then
            bench_rows "$q" "amxdiag $impl"
        fi
    done
    # hybrid splits (amxdiag only: the peers here are CPU builds)
    for ngl in ${NGLS:-}; do
        if step "amxdiag --ngl $ngl" "$limit" "$amx" run -m "$model" -p "$prompt" -n "$gen" -r "$reps" -t "$threads" \
            --ngl "$ngl"; then
            bench_rows "$q" "amxdiag --ngl $ngl"
        fi
    done
    lb=(-m "$model" -p "$prompt" -n "$gen" -r "$reps" -t "$threads" -o md)
    if [ -x "$peers/llama-bench" ]; then
        step "llama.cpp AMX" "$limit" "$peers/llama-bench" "${lb[@]}" && bench_rows "$q" "llama.cpp AMX"
        if [ -n "$noamx" ]; then
            step "llama.cpp AMX blocked" "$limit" "$noamx" "$peers/llama-bench" "${lb[@]}" &&
                bench_rows "$q" "llama.cpp AMX blocked"
        fi
    fi
    if [ -x "$peers/llama-bench-cuda" ]; then
        # llama.cpp's CUDA build at the same splits (-ngl N: the last N layers on the GPU)
        for ngl in ${NGLS:-}; do
            step "llama.cpp CUDA -ngl $ngl" "$limit" env LD_LIBRARY_PATH="$peers:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" \
                "$peers/llama-bench-cuda" "${lb[@]}" -ngl "$ngl" && bench_rows "$q" "llama.cpp CUDA -ngl $ngl"
        done
    fi
    if [ -x "$peers/llama-bench-clang" ]; then
        step "llama.cpp AMX (clang)" "$limit" "$peers/llama-bench-clang" "${lb[@]}" &&
            bench_rows "$q" "llama.cpp AMX (clang)"
    fi
    if [ -x "$peers/llama-bench-avx512" ]; then
        step "llama.cpp AVX-512 build" "$limit" "$peers/llama-bench-avx512" "${lb[@]}" &&
            bench_rows "$q" "llama.cpp AVX-512 build"
    fi
    if [ -x "$peers/ik-llama-bench" ]; then
        step "ik_llama.cpp" "$limit" "$peers/ik-llama-bench" "${lb[@]}" && bench_rows "$q" "ik_llama.cpp"
        step "ik_llama.cpp -rtr 1" "$limit" "$peers/ik-llama-bench" "${lb[@]}" -rtr 1 &&
            bench_rows "$q" "ik_llama.cpp -rtr 1"
    fi

    # Greedy tokens on the same prompt ids (64 tokens, seed 1, 16 generated).
    force=""
    for impl in amx avx512; do
        if step "greedy amxdiag $impl $q" 60 "$amx" run -m "$model" --greedy -p 64 -n 16 --seed 1 -t "$threads" \
            --cpu-kernels "$impl"; then
            { echo "$q amxdiag $impl:"; sed 's/^/  /' "$work/step.out"; } >>"$greedy"
            # the first implementation that ran gives the tokens the peers are forced along
            [ -n "$force" ] || force=$(sed -n 2p "$work/step.out")
        fi
    done
    for tool in greedy-llama greedy-ik; do
        [ -x "$peers/$tool" ] || continue
        for wrap in "" noamx; do
            [ "$wrap" = noamx ] && { [ "$tool" = greedy-llama ] && [ -n "$noamx" ] || continue; }
            if step "$tool${wrap:+ ($wrap)} $q" 60 env FORCE="$force" GAPS=1 ${wrap:+"$noamx"} "$peers/$tool" "$model" \
                64 16 1 "$threads"; then
                {
                    echo "$q $tool${wrap:+ ($wrap)}:"
                    grep -E "^(model|tokens|last logits|first):" "$work/step.out" | sed 's/^/  /'
                    grep -E "buffer size|AMX|repack" "$work/step.out" | grep -v "^llama_model_loader" | sed 's/^/  | /'
                } >>"$greedy"
            fi
        done
    done
    rm -f "$model"
    say
done

# The table: one row per engine, pp and tg per quantisation.
{
    echo "## Table (t/s, mean ± sd of $reps; $threads threads)"
    echo
    printf '| engine |'
    for q in $quants; do printf ' %s pp%s | %s tg%s |' "$q" "$prompt" "$q" "$gen"; done
    echo
    printf '|---|'
    for q in $quants; do printf -- '---:|---:|'; done
    echo
    engines=("amxdiag amx" "amxdiag avx512")
    for ngl in ${NGLS:-}; do engines+=("amxdiag --ngl $ngl"); done
    engines+=("llama.cpp AMX" "llama.cpp AMX (clang)" "llama.cpp AMX blocked" "llama.cpp AVX-512 build")
    for ngl in ${NGLS:-}; do engines+=("llama.cpp CUDA -ngl $ngl"); done
    engines+=("ik_llama.cpp" "ik_llama.cpp -rtr 1")
    for e in "${engines[@]}"; do
        row="| $e |"
        any=0
        for q in $quants; do
            pp=${result[$q,$e,pp]:-}
            tg=${result[$q,$e,tg]:-}
            [ -n "$pp$tg" ] && any=1
            row="$row ${pp:--} | ${tg:--} |"
        done
        [ $any = 1 ] && echo "$row"
    done
    echo
    echo "greedy tokens: greedy.txt"
} | tee -a "$summary"
