// The device plan's choices, read without an accelerator of each kind: the plan of a kind is a value.
namespace HitGpu.Kernels.Tests;

public sealed class DevicePlanTests
{
    private static DevicePlan Cpu => DevicePlan.For(AcceleratorKind.Cpu, maxGroupSize: 2, multiprocessors: 1, sharedBytesPerGroup: int.MaxValue) with
        { PathOverride = null, DenseOverride = null, TileOverride = null, ShuffleOverride = null };
    private static DevicePlan Gpu => DevicePlan.For(AcceleratorKind.Cuda, maxGroupSize: 1024, multiprocessors: 132, memoryBytes: 1L << 37) with
        { PathOverride = null, DenseOverride = null, TileOverride = null, ShuffleOverride = null };

    [Fact]
    public void Each_accelerator_gets_its_path_and_an_override_it_cannot_run_is_passed_over()
    {
        Assert.Equal(TrainingPath.CpuEpoch, Cpu.PathFor());
        Assert.Equal(TrainingPath.Layered, Gpu.PathFor());
        Assert.Equal(TrainingPath.Layered, (Cpu with { PathOverride = TrainingPath.Layered }).PathFor());
        // HITGPU_TRAINING_PATH=cpu-epoch on a GPU machine: meant for the CPU accelerator, so the GPU keeps its own.
        Assert.Equal(TrainingPath.Layered, (Gpu with { PathOverride = TrainingPath.CpuEpoch }).PathFor());
        // Asked for by a run: refused, saying why.
        Assert.Contains("CPU accelerator only", Assert.Throws<ArgumentException>(() => Gpu.PathFor(TrainingPath.CpuEpoch)).Message);
        Assert.Equal(TrainingPath.Layered, Cpu.PathFor(TrainingPath.Layered)); // a request beats the default
    }

    [Fact]
    public void A_device_takes_a_changed_plan_of_its_own_kind_only()
    {
        // Host addresses of GPU memory do not exist: a CPU plan on a GPU (or the reverse) would pick the wrong
        // kernels, so the device refuses it, and the CPU epoch's launcher need not ask the kind again.
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        Assert.Contains("a Cuda plan for a Cpu accelerator", Assert.Throws<ArgumentException>(() => device.Plan = Gpu).Message);
        device.Plan = device.Plan with { DenseOverride = DenseVariant.Lanes };
        Assert.Equal(DenseVariant.Lanes, device.Plan.DenseOverride);
    }

    [Fact]
    public void Auto_tries_the_GPUs_first_and_opens_the_CPU_as_the_CPU_is_opened()
    {
        var auto = DevicePlan.OpeningOrder(AcceleratorKind.Auto);
        Assert.Equal([ILGPU.Runtime.AcceleratorType.Cuda, ILGPU.Runtime.AcceleratorType.OpenCL], auto[0].Backends);
        Assert.Equal((AcceleratorKind.Cpu, ILGPU.OptimizationLevel.O0), (auto[1].Opened, DevicePlan.IrOptimizationFor(auto[1].Opened)));
        Assert.Equal(ILGPU.OptimizationLevel.O2, DevicePlan.IrOptimizationFor(auto[0].Opened));
        foreach (var kind in new[] { AcceleratorKind.Cpu, AcceleratorKind.Cuda, AcceleratorKind.OpenCL })
            Assert.Equal(kind, DevicePlan.KindOf(Assert.Single(Assert.Single(DevicePlan.OpeningOrder(kind)).Backends)));
    }

    [Fact]
    public void Memory_that_does_not_hold_an_estimate_is_said_in_one_phrase_and_memory_that_does_is_not()
    {
        var small = Gpu with { MemoryBytes = 3L << 29 };
        Assert.Null(small.MemoryShortfall(3L << 29));
        Assert.Equal("about 2.0 GiB; the cuda accelerator has 1.5 GiB", small.MemoryShortfall(1L << 31));
        Assert.Equal("about 2 MiB; the cuda accelerator has 1 MiB", (Gpu with { MemoryBytes = 1 << 20 }).MemoryShortfall((1 << 20) + 1));
    }

    [Fact]
    public void Whether_a_run_trains_on_the_GPU_epoch_is_the_path_the_plan_gives_it()
    {
        var study = ParameterLayout.ForClassifier(15, [64, 32]);
        var wide = ParameterLayout.ForClassifier(15, [1024, 1024]);
        Assert.True(Gpu.TrainsOnGpuEpoch(null, study, 32));
        Assert.False(Gpu.TrainsOnGpuEpoch(null, wide, 32));        // too large for a group: the layered path
        Assert.False(Gpu.TrainsOnGpuEpoch(TrainingPath.Layered, study, 32));
        Assert.False(Cpu.TrainsOnGpuEpoch(null, study, 32));       // the CPU accelerator's own is the CPU epoch
        Assert.True(Cpu.TrainsOnGpuEpoch(TrainingPath.GpuEpoch, study, 32));
        Assert.Null(Gpu.RequestedPathDoesNotFit(null, wide, 32));   // nothing asked: nothing refused
        Assert.Contains("shared memory", Gpu.RequestedPathDoesNotFit(TrainingPath.GpuEpoch, wide, 32));
        Assert.Throws<ArgumentException>(() => Gpu.TrainsOnGpuEpoch(TrainingPath.GpuEpoch, wide, 32));
    }

    [Fact]
    public void A_GPU_trains_a_network_that_fits_in_a_group_s_shared_memory_in_the_GPU_epoch_and_says_why_not_otherwise()
    {
        var study = ParameterLayout.ForClassifier(15, [64, 32]);
        // 3,137 parameters + 32 rows x 15 inputs + 2 x 32 rows x 97 activations = 9,825 floats, 38 KB of the 48 KB a CUDA group may ask for.
        Assert.Equal(9825, GpuEpoch.TrainSharedFloats(study, 32));
        Assert.Equal(TrainingPath.GpuEpoch, Gpu.PathFor(null, study, 32));
        Assert.Equal(TrainingPath.Layered, Gpu.PathFor(null, study, 256));   // a batch of 256 rows' activations do not fit
        Assert.Equal(TrainingPath.Layered, Gpu.PathFor(null, ParameterLayout.ForClassifier(15, [256, 256]), 32));
        Assert.Equal(TrainingPath.Layered, Gpu.PathFor(TrainingPath.Layered, study, 32)); // asked for
        string why = Assert.Throws<ArgumentException>(() => Gpu.PathFor(TrainingPath.GpuEpoch, study, 4096)).Message;
        Assert.Contains("KB of shared memory, a group has 48.0 KB", why);
        Assert.DoesNotContain("--", why); // the reason only, no CLI flag: what to shrink is the caller's to say (TrainingOptions.SmallerNetwork)
        // The CPU accelerator keeps its own epoch unless the GPU epoch is asked for (its tests) or forced.
        Assert.Equal(TrainingPath.CpuEpoch, Cpu.PathFor(null, study, 32));
        Assert.Equal(TrainingPath.GpuEpoch, Cpu.PathFor(TrainingPath.GpuEpoch, study, 32));
        Assert.Equal(TrainingPath.GpuEpoch, (Cpu with { PathOverride = TrainingPath.GpuEpoch }).PathFor(null, study, 32));
        // Forced where it does not fit: passed over, like an override the accelerator cannot run.
        Assert.Equal(TrainingPath.Layered, (Gpu with { PathOverride = TrainingPath.GpuEpoch }).PathFor(null, study, 4096));
        // Scoring: 48 KB / (4 bytes x (15 + 97)) = 109 rows a group; at most 256.
        Assert.Equal(109, Gpu.GpuEpochScoreRows(study));
        Assert.Equal(256, Cpu.GpuEpochScoreRows(study));
    }

    [Fact]
    public void The_dense_variant_shuffle_and_sums_follow_the_accelerator_unless_overridden()
    {
        // One rule for every layer (a plain one is the batched layer's one member): (groups, rows, outputs, depth).
        Assert.Equal(DenseVariant.Simple, Cpu.LayerVariantFor(1, 4096, 4096, 4096));
        Assert.Equal(DenseVariant.Tiled, Gpu.LayerVariantFor(1, 4096, 4096, 4096));
        Assert.Equal(DenseVariant.Simple, Gpu.LayerVariantFor(1, 32, 1, 32)); // too small to fill a tile, too short to split
        Assert.Equal(DenseVariant.Simple, Gpu.LayerVariantFor(1, 256, 64, 15)); // fills tiles, but a sum of 15 terms: simple (simulated cycles)
        Assert.Equal(DenseVariant.Tiled, Gpu.LayerVariantFor(1, 256, 256, 256));
        Assert.Equal(DenseVariant.Tiled, Gpu.LayerVariantFor(1, 64, 15, 4096)); // a small layer's gradient over a large batch: split-K
        Assert.Equal(DenseVariant.Lanes, Gpu.LayerVariantFor(15, 4096, 4096, 4096)); // grouped: the products do not cut them
        Assert.Equal(DenseVariant.Simple, Cpu.LayerVariantFor(15, 4096, 4096, 4096));
        // Overrides hold for every layer, except that a grouped one has no tiled variant.
        Assert.Equal(DenseVariant.Tiled, (Cpu with { DenseOverride = DenseVariant.Tiled }).LayerVariantFor(1, 1, 1, 1));
        Assert.Equal(DenseVariant.Lanes, (Gpu with { DenseOverride = DenseVariant.Tiled }).LayerVariantFor(15, 64, 64, 64));
        Assert.Equal(DenseVariant.Simple, (Cpu with { DenseOverride = DenseVariant.Tiled }).LayerVariantFor(15, 64, 64, 64));
        Assert.Equal(DenseVariant.Lanes, (Cpu with { DenseOverride = DenseVariant.Lanes }).LayerVariantFor(1, 64, 64, 64));
        Assert.Equal(DenseVariant.Lanes, (Gpu with { DenseOverride = DenseVariant.Lanes }).LayerVariantFor(1, 64, 64, 64));
        Assert.Equal(DenseVariant.Simple, (Gpu with { DenseOverride = DenseVariant.Simple }).LayerVariantFor(1, 4096, 4096, 4096));
        Assert.False(Cpu.ShufflesOnDevice());
        Assert.True(Gpu.ShufflesOnDevice());
        Assert.True((Cpu with { ShuffleOverride = true }).ShufflesOnDevice());
        Assert.False(Gpu.ShufflesOnDevice(requested: false));
        Assert.True(Gpu.SumsMetricsOnDevice);
        Assert.True(Cpu.SharesHostMemory);
        Assert.Equal(2, Cpu.ServingScorers); // serving: a second scorer on the CPU accelerator, one on a GPU
        Assert.Equal(1, Gpu.ServingScorers);
        Assert.Equal(TimeSpan.Zero, Cpu.ServingBatchWindow);
        Assert.Equal(TimeSpan.FromMilliseconds(2), Gpu.ServingBatchWindow);
        Assert.Equal(new LaunchShape(1, 2, Blocked: true), Cpu.ShapeFor(1_000_000));
        Assert.Equal(new LaunchShape(132 * 8, 256, Blocked: false), Gpu.ShapeFor(1_000_000));
        Assert.Equal(new LaunchShape(1, 256, Blocked: false), Gpu.ShapeFor(7));
    }

    [Fact]
    public void The_tile_fits_the_shape_and_the_group_and_the_GPU_compiler_is_told_its_size()
    {
        Assert.Equal(ProductTileSize.Large, Gpu.TileFor(4096, 4096, 1));      // 1,024 large tiles: every multiprocessor busy
        Assert.Equal(ProductTileSize.Small, Gpu.TileFor(1024, 512, 1));       // 32 large tiles would leave 100 of 132 idle
        Assert.Equal(ProductTileSize.Large, Gpu.TileFor(256, 512, 32));       // a batched layer's 32 member slabs
        Assert.Equal(ProductTileSize.Large, (Gpu with { TileOverride = ProductTileSize.Large }).TileFor(1, 1, 1));
        // The CPU accelerator's default group is too small for either tile: refused, saying why.
        Assert.Contains("groups of 64 threads", Assert.Throws<ArgumentException>(() => Cpu.TileFor(64, 64, 1)).Message);
        Assert.Equal(ILGPU.Runtime.KernelSpecialization.Empty, Cpu.ProductSpecialization(ProductTileSize.Small));
        Assert.Equal(256, Gpu.ProductSpecialization(ProductTileSize.Large).MaxNumThreadsPerGroup);
        Assert.Equal(6, Gpu.ProductSpecialization(ProductTileSize.Small).MinNumGroupsPerMultiprocessor);
    }
}
