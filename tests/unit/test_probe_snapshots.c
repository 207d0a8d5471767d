/* Every recorded and hand-made snapshot in tests/fixtures/snapshots evaluates to the
 * verdicts below, check by check; the checks that matter for each scenario also have
 * their evidence and explanation asserted. */
#include "adg_test.h"

#include <string.h>

#include "common/adg_util.h"
#include "probe/probe_sections.h"
#include "probe/probe_source.h"

static const struct {
    const char *file;
    const char *verdicts; /* "id=status ..." in report order: exactly these checks */
} expected[] = {
    {"dev-zen5-kvm.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=info cpu.isa.amx_bf16=info cpu.isa.amx_tile=info "
     "cpu.isa.amx_int8=info cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=fail amx.cpuinfo=skip amx.xcr0=skip amx.kernel=skip amx.permission=skip "
     "amx.sigaltstack=skip amx.palette=skip amx.tmul=skip amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.snc=info numa.binding=pass numa.thp=info pmu.paranoid=pass pmu.hardware=warn "
     "pmu.software=pass pmu.libpfm=info pmu.model=info pmu.events.amx=skip pmu.events.fp512=skip "
     "pmu.events.imc=info"},
    {"emr-kernel-5.15.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=pass cpu.isa.amx_bf16=pass cpu.isa.amx_tile=pass "
     "cpu.isa.amx_int8=pass cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=pass amx.cpuinfo=pass amx.xcr0=fail amx.kernel=fail amx.permission=fail "
     "amx.sigaltstack=skip amx.palette=pass amx.tmul=pass amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.snc=info numa.binding=pass numa.gpu=info numa.thp=info pmu.paranoid=pass "
     "pmu.hardware=warn pmu.software=pass pmu.libpfm=info pmu.model=warn pmu.events.amx=info "
     "pmu.events.fp512=info pmu.events.imc=info"},
    {"emr-kvm-h100.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=pass cpu.isa.amx_bf16=pass cpu.isa.amx_tile=pass "
     "cpu.isa.amx_int8=pass cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=pass amx.cpuinfo=pass amx.xcr0=pass amx.kernel=pass amx.permission=pass "
     "amx.sigaltstack=info amx.palette=pass amx.tmul=pass amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.snc=info numa.binding=pass numa.gpu=info numa.thp=info pmu.paranoid=pass "
     "pmu.hardware=warn pmu.software=pass pmu.libpfm=info pmu.model=warn pmu.events.amx=info "
     "pmu.events.fp512=info pmu.events.imc=info"},
    {"emr-xcr0-tile-clear.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=pass cpu.isa.amx_bf16=pass cpu.isa.amx_tile=pass "
     "cpu.isa.amx_int8=pass cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=pass amx.cpuinfo=warn amx.xcr0=fail amx.kernel=fail amx.permission=fail "
     "amx.sigaltstack=skip amx.palette=pass amx.tmul=pass amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.snc=info numa.binding=pass numa.gpu=info numa.thp=info pmu.paranoid=pass "
     "pmu.hardware=warn pmu.software=pass pmu.libpfm=info pmu.model=warn pmu.events.amx=info "
     "pmu.events.fp512=info pmu.events.imc=info"},
    {"emr-zero-palettes.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=pass cpu.isa.amx_bf16=pass cpu.isa.amx_tile=pass "
     "cpu.isa.amx_int8=pass cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=pass amx.cpuinfo=pass amx.xcr0=pass amx.kernel=pass amx.permission=pass "
     "amx.sigaltstack=info amx.palette=fail amx.tmul=warn amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.snc=info numa.binding=pass numa.gpu=info numa.thp=info pmu.paranoid=pass "
     "pmu.hardware=warn pmu.software=pass pmu.libpfm=info pmu.model=warn pmu.events.amx=info "
     "pmu.events.fp512=info pmu.events.imc=info"},
    {"spr-baremetal-pmu.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=pass cpu.isa.amx_bf16=pass cpu.isa.amx_tile=pass "
     "cpu.isa.amx_int8=pass cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=pass amx.cpuinfo=pass amx.xcr0=pass amx.kernel=pass amx.permission=pass "
     "amx.sigaltstack=info amx.palette=pass amx.tmul=pass amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.distances=info numa.snc=info numa.binding=pass numa.gpu=info "
     "numa.balancing=info numa.thp=info pmu.paranoid=pass pmu.hardware=pass pmu.software=pass "
     "pmu.libpfm=info pmu.model=pass pmu.events.amx=pass pmu.events.fp512=pass pmu.events.imc=pass"},
    {"spr-numactl-bound.json",
     "cpu.identity=info cpu.hypervisor=info cpu.kernel=info cpu.isa.avx2=pass cpu.isa.avx_vnni=pass "
     "cpu.isa.avx512f=pass cpu.isa.avx512bw=pass cpu.isa.avx512vl=pass cpu.isa.avx512_vnni=pass "
     "cpu.isa.avx512_bf16=pass cpu.isa.avx512_fp16=pass cpu.isa.amx_bf16=pass cpu.isa.amx_tile=pass "
     "cpu.isa.amx_int8=pass cpu.isa.amx_fp16=info cpu.isa.amx_complex=info cpu.xsave=pass "
     "cpu.selftest=skip amx.cpuid=pass amx.cpuinfo=pass amx.xcr0=pass amx.kernel=pass amx.permission=pass "
     "amx.sigaltstack=info amx.palette=pass amx.tmul=pass amx.selftest=skip amx.usable=info "
     "numa.topology=info numa.distances=info numa.snc=info numa.binding=warn numa.gpu=info "
     "numa.balancing=info numa.thp=info pmu.paranoid=pass pmu.hardware=pass pmu.software=pass "
     "pmu.libpfm=info pmu.model=pass pmu.events.amx=pass pmu.events.fp512=pass pmu.events.imc=pass"},
};

static char *fixture(const char *name)
{
    const char *dir = getenv("FIXTURES");
    char *p = NULL;
    if (asprintf(&p, "%s/snapshots/%s", dir && *dir ? dir : "tests/fixtures", name) < 0)
        return NULL;
    return p;
}

static void evaluate(const char *name, probe_report *rep)
{
    char *path = fixture(name);
    assert_non_null(path);
    probe_src *src = NULL;
    ADG_ASSERT_OK(probe_src_load(path, &src));
    free(path);
    probe_opts o;
    memset(&o, 0, sizeof o);
    o.sections = PROBE_SEC_ALL;
    probe_report_init(rep);
    ADG_ASSERT_OK(probe_cpu_section(&o, src, rep));
    ADG_ASSERT_OK(probe_amx_section(&o, src, rep));
    ADG_ASSERT_OK(probe_numa_section(&o, src, rep));
    ADG_ASSERT_OK(probe_pmu_section(&o, src, rep));
    probe_src_free(src);
}

static void test_verdicts(void **state)
{
    (void)state;
    for (size_t f = 0; f < ADG_ARRAY_LEN(expected); f++) {
        probe_report rep;
        evaluate(expected[f].file, &rep);
        adg_strbuf got;
        adg_sb_init(&got);
        for (size_t i = 0; i < rep.n; i++)
            adg_sb_printf(&got, "%s%s=%s", i ? " " : "", rep.checks[i].id, probe_status_name(rep.checks[i].status));
        if (strcmp(got.buf, expected[f].verdicts)) {
            print_error("%s:\n  got      %s\n  expected %s\n", expected[f].file, got.buf, expected[f].verdicts);
            fail();
        }
        adg_sb_free(&got);
        probe_report_free(&rep);
    }
}

static const probe_check *must(const probe_report *rep, const char *id)
{
    const probe_check *c = probe_report_find(rep, id);
    if (!c)
        fail_msg("no check %s", id);
    return c;
}

#define HAS(rep, id, field, text)                                                                   \
    do {                                                                                            \
        const probe_check *c_ = must(rep, id);                                                      \
        if (!strstr(c_->field, text))                                                               \
            fail_msg("%s.%s = \"%s\" lacks \"%s\"", id, #field, c_->field, text);                   \
    } while (0)

static void test_emr(void **state)
{
    (void)state;
    probe_report rep;
    evaluate("emr-kvm-h100.json", &rep);
    HAS(&rep, "cpu.identity", evidence, "family 6 model 207");
    HAS(&rep, "cpu.identity", evidence, "Emerald Rapids");
    HAS(&rep, "cpu.hypervisor", evidence, "KVM");
    HAS(&rep, "amx.palette", evidence, "palette 1: 8 tiles x 1024 bytes (16 rows x 64 bytes)");
    HAS(&rep, "amx.xcr0", evidence, "XTILECFG[17]=1 XTILEDATA[18]=1");
    HAS(&rep, "amx.xcr0", evidence, "component 18: 8192 bytes");
    HAS(&rep, "amx.sigaltstack", evidence, "ENOSPC");
    HAS(&rep, "amx.selftest", explanation, "not run from a snapshot");
    HAS(&rep, "amx.usable", evidence, "yes");
    HAS(&rep, "pmu.hardware", explanation, "no hardware PMU");
    HAS(&rep, "pmu.model", evidence, "does not know family 6 model 207");
    HAS(&rep, "pmu.model", evidence, "'spr' table (Sapphire Rapids)");
    HAS(&rep, "pmu.events.amx", evidence, "EXE.AMX_BUSY = spr::EXE:AMX_BUSY (type 4 config 0x2b7)");
    HAS(&rep, "numa.topology", evidence, "1 node");
    probe_report_free(&rep);
}

static void test_dev(void **state)
{
    (void)state;
    probe_report rep;
    evaluate("dev-zen5-kvm.json", &rep);
    HAS(&rep, "cpu.identity", evidence, "AuthenticAMD");
    HAS(&rep, "amx.cpuid", evidence, "AMX-TILE[24]=0");
    HAS(&rep, "amx.cpuid", remedy, "Sapphire Rapids");
    HAS(&rep, "amx.usable", evidence, "no: first failing layer: CPU (CPUID)");
    HAS(&rep, "pmu.hardware", evidence, "errno 2");
    HAS(&rep, "pmu.hardware", explanation, "no hardware PMU");
    HAS(&rep, "numa.topology", evidence, "1 node");
    probe_report_free(&rep);
}

static void test_xcr0_clear(void **state)
{
    (void)state;
    probe_report rep;
    evaluate("emr-xcr0-tile-clear.json", &rep);
    HAS(&rep, "amx.xcr0", evidence, "XTILECFG[17]=0 XTILEDATA[18]=0");
    HAS(&rep, "amx.xcr0", explanation, "raises #UD");
    HAS(&rep, "amx.cpuinfo", explanation, "the kernel hides it");
    HAS(&rep, "amx.permission", evidence, "EOPNOTSUPP");
    HAS(&rep, "amx.usable", evidence, "first failing layer: OS (XCR0)");
    probe_report_free(&rep);
}

static void test_kernel_515(void **state)
{
    (void)state;
    probe_report rep;
    evaluate("emr-kernel-5.15.json", &rep);
    HAS(&rep, "amx.kernel", explanation, "older than 5.16");
    HAS(&rep, "amx.kernel", evidence, "EINVAL");
    HAS(&rep, "amx.permission", explanation, "EINVAL: the kernel is older than 5.16");
    HAS(&rep, "amx.permission", evidence, "5.15.0-91-generic (5.15) is older than 5.16");
    HAS(&rep, "amx.permission", remedy, "5.16 or newer");
    probe_report_free(&rep);
}

static void test_zero_palettes(void **state)
{
    (void)state;
    probe_report rep;
    evaluate("emr-zero-palettes.json", &rep);
    HAS(&rep, "amx.palette", evidence, "0 palettes");
    HAS(&rep, "amx.palette", explanation, "zero palettes");
    HAS(&rep, "amx.usable", evidence, "first failing layer: palette (CPUID 0x1D)");
    probe_report_free(&rep);
}

static void test_spr(void **state)
{
    (void)state;
    probe_report rep;
    evaluate("spr-baremetal-pmu.json", &rep);
    HAS(&rep, "cpu.identity", evidence, "Sapphire Rapids");
    HAS(&rep, "cpu.hypervisor", evidence, "bare metal");
    HAS(&rep, "pmu.model", evidence, "detects core PMU 'spr'");
    HAS(&rep, "pmu.events.imc", evidence, "8 uncore_imc PMUs");
    HAS(&rep, "pmu.paranoid", evidence, "0:");
    HAS(&rep, "numa.distances", evidence, "node 0:  10  21");
    HAS(&rep, "numa.snc", evidence, "2 packages, 2 nodes");
    probe_report_free(&rep);
    evaluate("spr-numactl-bound.json", &rep);
    HAS(&rep, "numa.binding", evidence, "left out: node 0 (CPUs and memory)");
    HAS(&rep, "numa.binding", evidence, "memory policy: bind nodes 1");
    HAS(&rep, "numa.gpu", evidence, "OUTSIDE");
    probe_report_free(&rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),   cmocka_unit_test(test_emr),       cmocka_unit_test(test_dev),
        cmocka_unit_test(test_xcr0_clear), cmocka_unit_test(test_kernel_515), cmocka_unit_test(test_zero_palettes),
        cmocka_unit_test(test_spr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
