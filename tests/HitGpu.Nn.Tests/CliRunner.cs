// The hitgpu command run in-process, through the same entry point as the executable, for the tests.
using HitGpu.Cli;

namespace HitGpu.Nn.Tests;

public static class CliRunner
{
    public static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = HitGpuCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
