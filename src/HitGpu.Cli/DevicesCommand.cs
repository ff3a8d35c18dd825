// hitgpu devices: every accelerator ILGPU finds, and whether HitGpu can use it.
using System.CommandLine;
using HitGpu.Kernels;

namespace HitGpu.Cli;

public static class DevicesCommand
{
    public static Command Create(TextWriter output)
    {
        var command = new Command("devices", "List the accelerators ILGPU finds and whether HitGpu can use them");
        command.SetAction(_ =>
        {
            output.WriteLine($"{"kind",-7} {"name",-40} {"memory",10}  usable");
            foreach (var d in ComputeDevice.List())
                output.WriteLine($"{d.Kind.ToString().ToLowerInvariant(),-7} {d.Name,-40} " +
                    $"{(d.MemoryBytes > 0 ? $"{d.MemoryBytes / (1 << 30)} GiB" : "-"),10}  {d.Note}");
            return HitGpuCli.Ok;
        });
        return command;
    }
}
