// One accelerator for the whole test run: the CPU accelerator by default, or the one named by
// HITGPU_TEST_ACCELERATOR (cpu, cuda, opencl), so the same tests run on a GPU machine.
namespace HitGpu.Kernels.Tests;

public sealed class AcceleratorFixture : IDisposable
{
    private static AcceleratorKind Kind => ComputeDevice.ParseKind(Environment.GetEnvironmentVariable("HITGPU_TEST_ACCELERATOR") ?? "cpu");

    public ComputeDevice Device { get; } = ComputeDevice.Open(Kind);

    /// <summary>What the tests' accelerator runs, known before it opens (theory data): its kind's plan.</summary>
    public static DevicePlan Plan => DevicePlan.For(Kind, maxGroupSize: 1, multiprocessors: 1);

    /// <summary>
    /// Whether the tests run on the simulated GPU (bench/gpusim/run.sh sets HITGPU_SIMULATED_GPU=1), where a launch
    /// runs some 10^5 warp instructions a second: theories whose largest shapes take minutes there take smaller
    /// ones of the same kind (still splitting, still partial groups). The full shapes run everywhere else.
    /// </summary>
    public static bool Simulated => Environment.GetEnvironmentVariable("HITGPU_SIMULATED_GPU") == "1";

    /// <summary>For a test of the CPU epoch: skipped, saying why, where the tests run on a GPU (the CPU epoch reads host addresses).</summary>
    public void RequireCpuEpoch() =>
        Assert.SkipUnless(Device.Plan.Paths.Contains(TrainingPath.CpuEpoch),
            $"the CPU epoch runs on the CPU accelerator only; these tests run on {Device.Kind}");

    public void Dispose() => Device.Dispose();
}

[CollectionDefinition(Name)]
public sealed class AcceleratorCollection : ICollectionFixture<AcceleratorFixture>
{
    public const string Name = "accelerator";
}
