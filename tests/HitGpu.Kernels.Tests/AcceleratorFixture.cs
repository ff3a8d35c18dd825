// One accelerator for the whole test run: the CPU accelerator by default, or the one named by
// HITGPU_TEST_ACCELERATOR (cpu, cuda, opencl), so the same tests run on a GPU machine.
namespace HitGpu.Kernels.Tests;

public sealed class AcceleratorFixture : IDisposable
{
    public ComputeDevice Device { get; } = ComputeDevice.Open(
        ComputeDevice.ParseKind(Environment.GetEnvironmentVariable("HITGPU_TEST_ACCELERATOR") ?? "cpu"));

    public void Dispose() => Device.Dispose();
}

[CollectionDefinition(Name)]
public sealed class AcceleratorCollection : ICollectionFixture<AcceleratorFixture>
{
    public const string Name = "accelerator";
}
