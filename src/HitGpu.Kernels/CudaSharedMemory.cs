// Shared memory beyond 48 KB a group on CUDA. Hopper gives a group up to 227 KB, but the driver lets a kernel
// launch with more than 48 KB of dynamic shared memory only after cuFuncSetAttribute raised its limit, which
// ILGPU 1.5.3 never calls (its source has no cuFuncSetAttribute). We call it on the kernel's function handle
// (ILGPU's CudaKernel.FunctionPtr), through the driver library ILGPU itself loads (CudaLibraryResolver).
using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace HitGpu.Kernels;

internal static unsafe class CudaSharedMemory
{
    private const int MaxSharedMemoryPerBlockOptIn = 97; // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    private const int MaxDynamicSharedSizeBytes = 8;     // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES

    /// <summary>What any kernel may take without asking.</summary>
    public const int Default = 48 * 1024;

    private static readonly IntPtr Driver = OperatingSystem.IsWindows()
        ? (NativeLibrary.TryLoad("nvcuda", out var windows) ? windows : IntPtr.Zero)
        : CudaLibraryResolver.Resolve("cuda", typeof(CudaSharedMemory).Assembly, null);

    private static IntPtr Export(string name) => Driver != IntPtr.Zero && NativeLibrary.TryGetExport(Driver, name, out var address) ? address : IntPtr.Zero;

    /// <summary>The most dynamic shared memory a kernel of this device may be given once it asks (the driver's opt-in limit), or null when the driver does
    /// not say.</summary>
    public static int? OptInBytes(CudaAccelerator accelerator)
    {
        var get = Export("cuDeviceGetAttribute");
        if (get == IntPtr.Zero)
            return null;
        int value;
        int result = ((delegate* unmanaged<int*, int, int, int>)get)(&value, MaxSharedMemoryPerBlockOptIn, accelerator.DeviceId);
        return result == 0 && value >= Default ? value : null;
    }

    /// <summary>Lets <paramref name="kernel"/> (a CUDA kernel; others need nothing) launch with <paramref name="bytes"/> of dynamic shared memory; refused
    /// in one line, saying how to go on, when the driver will not.</summary>
    public static void Allow(Kernel kernel, int bytes)
    {
        if (kernel is not CudaKernel cuda || bytes <= Default)
            return;
        var set = Export("cuFuncSetAttribute");
        int result = set == IntPtr.Zero ? -1 : ((delegate* unmanaged<IntPtr, int, int, int>)set)(cuda.FunctionPtr, MaxDynamicSharedSizeBytes, bytes);
        if (result != 0)
            throw new InvalidOperationException($"the CUDA driver refused {bytes / 1024.0:F1} KB of shared memory a group for the GPU epoch " +
                $"(cuFuncSetAttribute: error {result}); " +
                "HITGPU_TRAINING_PATH=layered trains on the layered path instead");
    }
}
