# PVH entry: QEMU (`-kernel`) finds the ELF note below and starts `_start32` in 32-bit protected
# mode, paging off, flat segments, with ebx = physical address of the hvm_start_info block.
#
# This code builds boot page tables that map physical memory 0..4 GiB three times:
#   identity (so the next instruction after enabling paging still runs),
#   at PHYS_OFFSET 0xffff800000000000 (the direct map the Rust code uses),
#   at KERNBASE    0xffffffff80000000 (where the kernel is linked; 2 GiB of it),
# with 2 MiB pages, then enables long mode and jumps to `kmain(start_info_phys)` in the higher
# half. The Rust code replaces these tables with its own as soon as memory is set up.

.set KERNBASE, 0xffffffff80000000
.set CR0_PE, 1 << 0
.set CR0_MP, 1 << 1
.set CR0_EM, 1 << 2
.set CR0_WP, 1 << 16
.set CR0_PG, 1 << 31
.set CR4_PAE, 1 << 5
.set CR4_OSFXSR, 1 << 9
.set CR4_OSXMMEXCPT, 1 << 10
.set EFER_MSR, 0xc0000080
.set EFER_SCE, 1 << 0
.set EFER_LME, 1 << 8
.set EFER_NXE, 1 << 11

.section .note.pvh, "a", @note
.balign 4
.long 4                 # name size ("Xen\0")
.long 4                 # descriptor size
.long 18                # XEN_ELFNOTE_PHYS32_ENTRY
.asciz "Xen"
.balign 4
.long _start32

.section .boot.text, "ax", @progbits
.code32
.global _start32
_start32:
    cli
    cld
    mov %ebx, %edi                      # start info: kept in edi, becomes kmain's first argument
    mov $boot_stack32_top, %esp

    # PML4: entries 0 (identity), 256 (direct map) -> pdpt_low; 511 -> pdpt_high.
    mov $boot_pdpt_low, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + 256 * 8
    mov $boot_pdpt_high, %eax
    or $3, %eax
    mov %eax, boot_pml4 + 511 * 8

    # pdpt_low[0..4] -> the four page directories; pdpt_high[510], [511] -> the first two.
    mov $boot_pd, %eax
    or $3, %eax
    mov %eax, boot_pdpt_low
    mov %eax, boot_pdpt_high + 510 * 8
    add $4096, %eax
    mov %eax, boot_pdpt_low + 8
    mov %eax, boot_pdpt_high + 511 * 8
    add $4096, %eax
    mov %eax, boot_pdpt_low + 16
    add $4096, %eax
    mov %eax, boot_pdpt_low + 24

    # 2048 2 MiB pages: present, writable, huge.
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(, %ecx, 8)
    movl $0, boot_pd + 4(, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b

    mov $boot_pml4, %eax
    mov %eax, %cr3

    mov %cr4, %eax
    or $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    mov %eax, %cr4

    mov $EFER_MSR, %ecx
    rdmsr
    or $(EFER_SCE | EFER_LME | EFER_NXE), %eax
    wrmsr

    mov %cr0, %eax
    and $~CR0_EM, %eax
    or $(CR0_PE | CR0_MP | CR0_WP | CR0_PG), %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $start64

.code64
start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    movabs $boot_stack_top, %rsp
    xor %ebp, %ebp                      # end of the frame-pointer chain for backtraces
    movabs $kmain, %rax
    call *%rax
2:  hlt
    jmp 2b

.section .boot.data, "aw", @progbits
.balign 4096
boot_pml4:      .fill 512, 8, 0
boot_pdpt_low:  .fill 512, 8, 0
boot_pdpt_high: .fill 512, 8, 0
boot_pd:        .fill 2048, 8, 0
boot_stack32:   .fill 256, 1, 0
boot_stack32_top:
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            # 0x08: 64-bit code, ring 0
    .quad 0x00cf92000000ffff            # 0x10: data, ring 0
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .bss
.balign 16
.global boot_stack_bottom
boot_stack_bottom:
    .skip 16 * 4096
.global boot_stack_top
boot_stack_top:
