// ILGPU imports the CUDA driver as "cuda", i.e. libcuda.so on Linux; many machines ship only libcuda.so.1.
// A stand-in driver named libcuda.so.1 (built here with the C compiler) must be found through our resolver.
using System.Diagnostics;

namespace HitGpu.Nn.Tests;

public sealed class CudaDriverTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-cuda-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static (int code, string output) Run(string file, string arguments, IDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            start.Environment[key] = value;
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }

    [Fact]
    public void A_driver_present_only_as_libcuda_so_1_is_loaded()
    {
        Assert.True(OperatingSystem.IsLinux(), "this check is about Linux library names");
        // A driver with no device: cuInit succeeds, cuDeviceGetCount reports 0 and leaves a mark that ILGPU called it.
        string source = Path.Combine(folder, "fake_cuda.c"), mark = Path.Combine(folder, "called");
        File.WriteAllText(source, """
            #include <stdio.h>
            #include <stdlib.h>
            int cuInit(unsigned int flags) { return 0; }
            int cuDriverGetVersion(int* version) { *version = 12000; return 0; }
            int cuDeviceGetCount(int* count)
            {
                FILE* f = fopen(getenv("HITGPU_FAKE_CUDA_MARK"), "w");
                if (f) fclose(f);
                *count = 0;
                return 0;
            }
            """);
        var (ccCode, ccOutput) = Run("cc", $"-shared -fPIC -o {Path.Combine(folder, "libcuda.so.1")} {source}");
        Assert.True(ccCode == 0, "building the stand-in driver needs a C compiler (cc): " + ccOutput);

        // Under `dotnet test` the CLI runs through the dotnet host; published self-contained (bench/gpu, on a
        // machine with no .NET) through its own executable beside the tests.
        string published = Path.Combine(AppContext.BaseDirectory, "hitgpu");
        bool selfContained = File.Exists(Path.Combine(AppContext.BaseDirectory, "libcoreclr.so"));
        (string file, string arguments) devices = selfContained && File.Exists(published)
            ? (published, "devices")
            : ("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "hitgpu.dll")}\" devices");
        var (code, output) = Run(devices.file, devices.arguments,
            new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = folder, ["HITGPU_FAKE_CUDA_MARK"] = mark });
        Assert.True(code == 0, output);
        Assert.True(File.Exists(mark), "ILGPU never called the driver found as libcuda.so.1");
        Assert.Contains("no: the CUDA driver loads but reports no device", output);

        // Without it on the library path the stand-in is not called: the line above came from it. On a machine
        // with no driver the command then says so; on a GPU machine it finds the real one.
        File.Delete(mark);
        (code, output) = Run(devices.file, devices.arguments, new Dictionary<string, string> { ["HITGPU_FAKE_CUDA_MARK"] = mark });
        Assert.True(code == 0, output);
        Assert.False(File.Exists(mark), "the stand-in driver was called without being on the library path");
        bool realDriver = System.Runtime.InteropServices.NativeLibrary.TryLoad("libcuda.so.1", out _)
            || System.Runtime.InteropServices.NativeLibrary.TryLoad("libcuda.so", out _);
        if (!realDriver)
            Assert.Contains("no: no CUDA driver library (libcuda.so.1 or libcuda.so on Linux)", output);
    }
}
