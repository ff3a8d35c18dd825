// The goals of the GPU kernels' machine code (issue 20), read without a GPU: every GPU kernel through ptxas
// for Hopper (sm_90) and cuobjdump, as bench/gpu/machine-code.sh prints them (bench/gpu/MachineCode.cs). The
// tools come from bench/gpu/cuda-tools.sh, which .ci/run calls; where they are missing the test is skipped,
// saying so.
using HitGpu.MachineCode;

namespace HitGpu.Kernels.Tests;

public sealed class MachineCodeTests
{
    private static readonly Lazy<IReadOnlyList<KernelFigures>> Figures = new(() => MachineCodeReport.ReadAll(MachineCodeReport.ToolsFolder()!));

    private static IReadOnlyList<KernelFigures> Read()
    {
        Assert.SkipWhen(MachineCodeReport.ToolsFolder() is null,
            "ptxas and cuobjdump not found (bench/gpu/cuda-tools.sh fetches them; HITGPU_CUDA_TOOLS names their folder)");
        return Figures.Value;
    }

    private static bool IsProduct(KernelFigures k) => k.Name.StartsWith("DenseTiled.ProductKernel<", StringComparison.Ordinal);

    [Fact]
    public void No_GPU_kernel_spills_to_local_memory()
    {
        var kernels = Read();
        Assert.Equal(KernelCatalog.ForGpu.Count, kernels.Count);
        Assert.All(kernels, k => Assert.True(k.SpillStores == 0 && k.SpillLoads == 0, $"{k.Name}: {k.SpillStores} bytes spilled, {k.SpillLoads} reloaded"));
    }

    [Fact]
    public void The_large_tile_multiplies_in_at_least_three_quarters_of_its_main_loop_from_16_byte_shared_loads()
    {
        // The vector kernels are what large products run (the 4096^3 forward, weight and input gradients).
        var large = Read().Where(k => IsProduct(k) && k.Name.Contains("LargeTile", StringComparison.Ordinal)
            && k.Name.Contains("VectorLoads", StringComparison.Ordinal)).ToArray();
        Assert.Equal(4, large.Length);
        Assert.All(large, k =>
        {
            var loop = k.MainLoop!;
            Assert.True(loop.FfmaShare >= 0.75, $"{k.Name}: FFMA {loop.Ffma} of {loop.Instructions} instructions");
            Assert.Equal(512, loop.Ffma); // 8 x 8 outputs, 8 k-steps a slice
            Assert.Equal(32, loop.Shared128);
            Assert.Equal(0, loop.SharedScalar);
            Assert.True(loop.Global128 >= 2 && loop.GlobalScalar <= 2, $"{k.Name}: global loads {loop.GlobalScalar} scalar, {loop.Global128} of 16 bytes");
        });
    }

    [Fact]
    public void The_large_tile_keeps_two_groups_on_a_multiprocessor()
    {
        Assert.All(Read().Where(k => IsProduct(k) && k.Name.Contains("LargeTile", StringComparison.Ordinal)),
            k => Assert.True(k.GroupsPerMultiprocessor >= 2,
                $"{k.Name}: {k.Registers} registers, {k.StaticShared + k.DynamicShared} bytes shared: {k.GroupsPerMultiprocessor} group(s)"));
    }

    [Fact]
    public void Every_kernel_a_GPU_runs_for_a_dense_layer_is_at_least_a_quarter_multiply_adds()
    {
        // On a GPU a layer whose products fill a tile over sums of 128 terms or more runs as these products
        // (edges and scaled operands take the scalar path) and the three reductions that are not products (dr,
        // ds, layer 0's sum over members), in both kinds of load; a grouped one (embeddings) as the three lanes
        // kernels (DevicePlan.LayerVariantFor). The simple kernels, one output a work item, run the short sums,
        // where a launch costs more than the arithmetic; they are not held to this (bench/RESULTS.md).
        var kernels = Read().Where(k => IsProduct(k) || IsBatchedReduction(k) || k.Name.StartsWith("BatchedDense.Lanes", StringComparison.Ordinal)).ToArray();
        Assert.Equal(16 + 6 + 3, kernels.Length);
        Assert.All(kernels, k => Assert.True(k.MainLoop is { } loop && loop.FfmaShare >= 0.25,
            $"{k.Name}: main loop {k.MainLoop?.Ffma} FFMA of {k.MainLoop?.Instructions}"));
    }

    [Fact]
    public void The_GPU_epoch_keeps_two_groups_of_the_study_network_on_a_multiprocessor()
    {
        // Its shared memory at the study network, batch 32 (MachineCodeReport.LaunchOf): 38 KB a group; registers
        // must not be what keeps a second group (or a second run) off a multiprocessor.
        var epoch = Read().Where(k => k.Name.StartsWith("GpuEpoch.", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, epoch.Length);
        Assert.All(epoch, k => Assert.True(k.GroupsPerMultiprocessor >= 2,
            $"{k.Name}: {k.Registers} registers, {k.DynamicShared} bytes shared: {k.GroupsPerMultiprocessor} group(s)"));
    }

    private static bool IsBatchedReduction(KernelFigures k) =>
        k.Name.StartsWith("BatchedDense.", StringComparison.Ordinal) && k.Name.Contains("Loads>", StringComparison.Ordinal);

    [Fact]
    public void The_main_loop_is_read_from_the_innermost_backward_branch()
    {
        // The parser on a hand-written listing: an outer loop (0x10-0x60) around an inner one (0x20-0x40).
        const string sass = """
                /*0010*/                   FFMA R1, R2, R3, R1 ;
                /*0020*/                   LDS.128 R4, [R0] ;
                /*0030*/                   FFMA R1, R4, R5, R1 ;
                /*0040*/              @!P0 BRA 0x20 ;
                /*0050*/                   LDG.E R6, [R2.64] ;
                /*0060*/               @P1 BRA 0x10 ;
                /*0070*/                   EXIT ;
            """;
        var loop = MachineCodeReport.MainLoop(sass)!;
        Assert.Equal(new LoopFigures(3, 1, 0, 1, 0, 0), loop);
        // A loop of exponentials (a loss's) gives way to a product's loop with fewer FFMA, unless it is alone.
        const string lossThenProduct = """
                /*0010*/                   FFMA R1, R2, R3, R1 ;
                /*0020*/                   MUFU.EX2 R4, R4 ;
                /*0030*/                   FFMA R1, R4, R3, R1 ;
                /*0040*/              @!P0 BRA 0x10 ;
                /*0050*/                   LDS R5, [R0] ;
                /*0060*/                   FFMA R6, R5, R5, R6 ;
                /*0070*/              @!P1 BRA 0x50 ;
                /*0080*/                   EXIT ;
            """;
        Assert.Equal(new LoopFigures(3, 1, 1, 0, 0, 0), MachineCodeReport.MainLoop(lossThenProduct));
        Assert.Equal(new LoopFigures(4, 2, 0, 0, 0, 0), MachineCodeReport.MainLoop(lossThenProduct[..lossThenProduct.IndexOf("/*0050*/",
            StringComparison.Ordinal)]));
        Assert.Null(MachineCodeReport.MainLoop("        /*0000*/                   EXIT ;"));
        Assert.Equal(2, MachineCodeReport.GroupsPerMultiprocessor(registers: 117, threads: 256, sharedBytes: 16896));
        Assert.Equal(1, MachineCodeReport.GroupsPerMultiprocessor(registers: 129, threads: 256, sharedBytes: 16896));
    }
}
