// The dense kernels' variants, and the device each runs on in the tests: the tiled product's tiles need groups
// of 64 and 256 threads, more than the CPU accelerator's default device has (one thread per core), so on the
// CPU they run on devices opened with that many threads (each a simulated GPU thread: slow, but exact); on a
// GPU, the tests' own device.
namespace HitGpu.Kernels.Tests;

public enum DenseKernels { Simple, TiledSmall, TiledLarge, Lanes }

public static class TiledDevices
{
    private static readonly Lazy<ComputeDevice> Small = new(() => ComputeDevice.Open(AcceleratorKind.Cpu, cpuThreads: 64));
    private static readonly Lazy<ComputeDevice> Large = new(() => ComputeDevice.Open(AcceleratorKind.Cpu, cpuThreads: 256));
    private static readonly Lock Gate = new();

    private static int Threads(DenseKernels kernels) => kernels switch
    {
        DenseKernels.TiledLarge => 256,
        DenseKernels.TiledSmall => 64,
        _ => 1,
    };

    /// <summary>
    /// Runs <paramref name="launch"/> with the kernels forced on a device that can run them: the tests' device
    /// when its groups are large enough, else a CPU device with the tile's threads. One launch at a time.
    /// </summary>
    public static void With(ComputeDevice testDevice, DenseKernels kernels, Action<ComputeDevice> launch)
    {
        lock (Gate)
        {
            var device = testDevice.Plan.MaxGroupSize >= Threads(kernels) ? testDevice
                : kernels == DenseKernels.TiledLarge ? Large.Value : Small.Value;
            var before = device.Plan;
            device.Plan = before with
            {
                DenseOverride = kernels switch { DenseKernels.Simple => DenseVariant.Simple, DenseKernels.Lanes => DenseVariant.Lanes,
                    _ => DenseVariant.Tiled },
                TileOverride = kernels == DenseKernels.TiledLarge ? ProductTileSize.Large : ProductTileSize.Small,
            };
            try
            {
                launch(device);
            }
            finally
            {
                device.Plan = before;
            }
        }
    }
}
