// The hitgpu command through the same entry point as the executable: output, exit codes, one-line errors.
using HitGpu.Cli;

namespace HitGpu.Nn.Tests;

public sealed class CliTests
{
    private static (int code, string output, string error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = HitGpuCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Train_prints_one_line_per_epoch_and_the_test_accuracy()
    {
        var (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "2", "--batch-size", "64");
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Count(l => l.StartsWith("epoch ")));
        Assert.Matches(@"^epoch 1/2  loss \d\.\d{4}  accuracy \d+\.\d\d%  val_loss \d\.\d{4}  val_accuracy \d+\.\d\d%  \d+\.\d\d s", lines.First(l => l.StartsWith("epoch 1")));
        Assert.Matches(@"^test accuracy \d+\.\d\d%", lines[^1]);
        Assert.Equal("", error);
    }

    [Theory]
    [InlineData("file not found", "train", "--data", "/nonexistent/songs.csv")]
    [InlineData("--hidden takes positive widths", "train", "--hidden", "64,x")]
    [InlineData("epochs must be at least 1", "train", "--epochs", "0")]
    [InlineData("splits must be above 0", "train", "--test-split", "0.9")]
    [InlineData("'tpu' not recognized", "train", "--accelerator", "tpu")]
    [InlineData("--epochs", "train", "--epochs", "many")]
    public void Bad_input_gives_one_line_and_exit_code_2(string expected, params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("hitgpu: error: ", error);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", error + output);
    }

    [Fact]
    public void Cuda_on_a_machine_without_one_is_a_clear_error()
    {
        // CI has no GPU; on a GPU machine this test checks nothing and says so by returning early.
        using (var probe = ComputeDevice.Open(AcceleratorKind.Auto))
            if (probe.Kind == AcceleratorKind.Cuda)
                return;
        var (code, _, error) = Run("train", "--accelerator", "cuda", "--epochs", "1");
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Equal("hitgpu: error: no CUDA device found on this machine (try --accelerator cpu, or `hitgpu devices` to list what ILGPU sees)", error.Trim());
    }
}
