// Output files appear whole or not at all: written to a temporary file beside the target, flushed to disk,
// then renamed over it. A crash, a full disk or an exception midway leaves the old file (or none) in place.
// A process killed mid-write cannot delete its temporary file; the next write to the same target removes
// any that a process no longer running left behind, and an interrupt (Ctrl+C, SIGTERM) removes its own.
using System.Collections.Concurrent;
using System.Diagnostics;

namespace HitGpu.Nn;

public static class AtomicFile
{
    private static readonly ConcurrentDictionary<string, byte> inFlight = new();

    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string? folder = Path.GetDirectoryName(full);
        if (folder is not null && !Directory.Exists(folder))
            throw new InputException($"{path}: cannot write: folder {folder} does not exist");
        string name = Path.GetFileName(full);
        RemoveStale(folder ?? ".", name);
        string temporary = Path.Combine(folder ?? ".", $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        inFlight.TryAdd(temporary, 0);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw new InputException($"{path}: cannot write ({e.Message})");
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
        finally
        {
            inFlight.TryRemove(temporary, out _);
        }
    }

    public static void WriteText(string path, string text) =>
        Write(path, stream => stream.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));

    /// <summary>Deletes the temporary files of writes still in progress: for an interrupt handler, before the process ends.</summary>
    public static void AbandonWrites()
    {
        foreach (var temporary in inFlight.Keys)
            TryDelete(temporary);
    }

    /// <summary>The temporary file name of a write to <paramref name="name"/> by process <paramref name="processId"/>.</summary>
    public static bool IsTemporaryOf(string fileName, string name, out int processId)
    {
        processId = 0;
        string prefix = $".{name}.";
        if (!fileName.StartsWith(prefix, StringComparison.Ordinal) || !fileName.EndsWith(".tmp", StringComparison.Ordinal))
            return false;
        var parts = fileName[prefix.Length..^".tmp".Length].Split('.');
        return parts.Length == 2 && parts[1].Length == 32 && int.TryParse(parts[0], out processId);
    }

    /// <summary>Temporary files of writes to this target by processes that no longer run (killed mid-write).</summary>
    private static void RemoveStale(string folder, string name)
    {
        foreach (var file in Directory.EnumerateFiles(folder, ".*.tmp"))
            if (IsTemporaryOf(Path.GetFileName(file), name, out int processId) && !IsRunning(processId))
                TryDelete(file);
    }

    /// <summary>A path as the file system resolves it: absolute, through symbolic links.</summary>
    public static string Canonical(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException)
        {
            return full; // a broken or looping link: compare by its own path
        }
    }

    private static bool IsRunning(int processId)
    {
        if (processId == Environment.ProcessId)
            return true;
        try
        {
            using var process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
