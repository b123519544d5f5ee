/*
 * C reference for the exits benchmark of lab.bench.exits.
 *
 * Runs the very same guest code as the Python harness (the bytes come from
 * lab.guests.exit_loop, written to a file by lab/bench/reference.py), sets up
 * the vCPU the same way (flat 32-bit protected mode or 64-bit long mode with
 * 2 MiB identity pages) and resumes the same exits, but with a plain C loop
 * around KVM_RUN. Comparing its guest-timed cycles with the Python harness
 * shows how much Python adds to the exits that return to userspace.
 *
 * usage: exit_loop MODE CODE_FILE KIND ITERATIONS REPEAT
 *   MODE  protected32 | long64
 *   KIND  loop | cpuid | hypercall | pio_user | mmio_user | pio_ioeventfd
 * prints one line per timed run: "cycles_per_iteration host_ns_per_iteration"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x10000
#define CODE_ADDR 0x1000
#define RESULT_ADDR 0x0800
#define PT_ADDR 0x8000
#define EXIT_PORT 0x0510

static void die(const char *what) { perror(what); exit(2); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODE CODE_FILE KIND ITERATIONS REPEAT\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *kind = argv[3];
    long iterations = atol(argv[4]), repeat = atol(argv[5]);
    int long64 = strcmp(mode, "long64") == 0;
    int resume_pio = strcmp(kind, "pio_user") == 0;
    int resume_mmio = strcmp(kind, "mmio_user") == 0;
    int use_ioeventfd = strcmp(kind, "pio_ioeventfd") == 0;

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul); /* as lab.kvm.vm does; may fail harmlessly */

    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("mmap guest memory");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

    FILE *f = fopen(argv[2], "rb");
    if (!f) die("open code file");
    size_t n = fread(mem + CODE_ADDR, 1, MEM_SIZE - CODE_ADDR, f);
    fclose(f);
    if (n == 0) { fprintf(stderr, "empty code file\n"); return 2; }

    int efd = -1;
    if (use_ioeventfd) {
        efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct kvm_ioeventfd io = {.addr = EXIT_PORT, .len = 1, .fd = efd, .flags = KVM_IOEVENTFD_FLAG_PIO};
        if (ioctl(vm, KVM_IOEVENTFD, &io) < 0) die("KVM_IOEVENTFD");
    }

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    /* CPUID: what KVM supports (long mode needs the LM bit). */
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = nent;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb, .present = 1,
                               .dpl = 0, .db = long64 ? 0 : 1, .s = 1, .l = long64 ? 1 : 0, .g = 1};
    struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0x3, .present = 1,
                               .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr0 |= 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    if (long64) {
        uint64_t *pml4 = (uint64_t *)(mem + PT_ADDR), *pdpt = (uint64_t *)(mem + PT_ADDR + 0x1000);
        uint64_t *pd = (uint64_t *)(mem + PT_ADDR + 0x2000);
        pml4[0] = (PT_ADDR + 0x1000) | 3;
        for (int i = 0; i < 4; i++) pdpt[i] = (PT_ADDR + 0x2000 + i * 0x1000) | 3;
        for (uint64_t i = 0; i < 4 * 512; i++) pd[i] = (i << 21) | 0x83;
        sregs.cr3 = PT_ADDR;
        sregs.cr4 |= 1u << 5;
        sregs.cr0 |= (1u << 31) | (1u << 4) | (1u << 5);
        sregs.efer |= (1u << 8) | (1u << 10);
    }
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");

    for (long rep = 0; rep <= repeat; rep++) { /* run 0 warms up and is dropped, as in Python */
        struct kvm_regs regs = {.rip = CODE_ADDR, .rflags = 2};
        if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
        uint64_t t0 = now_ns();
        long resumed = 0;
        for (;;) {
            if (ioctl(vcpu, KVM_RUN, 0) < 0) {
                if (errno == EINTR) continue;
                die("KVM_RUN");
            }
            if (run->exit_reason == KVM_EXIT_IO && resume_pio && run->io.direction == KVM_EXIT_IO_OUT &&
                run->io.port == EXIT_PORT) {
                resumed++;
                continue;
            }
            if (run->exit_reason == KVM_EXIT_MMIO && resume_mmio && run->mmio.is_write) {
                resumed++;
                continue;
            }
            break;
        }
        uint64_t t1 = now_ns();
        if (run->exit_reason != KVM_EXIT_HLT) {
            fprintf(stderr, "unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
        uint64_t start, end;
        memcpy(&start, mem + RESULT_ADDR, 8);
        memcpy(&end, mem + RESULT_ADDR + 8, 8);
        if (efd >= 0) {
            uint64_t count = 0;
            if (read(efd, &count, 8) != 8 || (long)count != iterations) {
                fprintf(stderr, "ioeventfd counted %llu, expected %ld\n", (unsigned long long)count, iterations);
                return 1;
            }
        }
        if ((resume_pio || resume_mmio) && resumed != iterations) {
            fprintf(stderr, "%ld exits reached the VMM, expected %ld\n", resumed, iterations);
            return 1;
        }
        if (rep > 0)
            printf("%.3f %.3f\n", (double)(end - start) / iterations, (double)(t1 - t0) / iterations);
    }
    return 0;
}
