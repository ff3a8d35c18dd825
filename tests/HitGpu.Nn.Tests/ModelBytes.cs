// Edits of a model file's bytes, as a buggy or hostile writer would make them, for the loader's tests.
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace HitGpu.Nn.Tests;

public static class ModelBytes
{
    /// <summary>
    /// The file with its JSON header edited (the header length follows, the tensors stay); with
    /// <paramref name="editMetadata"/>, its HitGpu metadata edited and signed again over the file's tensors, so
    /// that only the checks behind the checksum can catch the edit.
    /// </summary>
    public static byte[] Edited(byte[] bytes, Action<JsonObject>? editHeader = null, Action<JsonObject>? editMetadata = null)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, headerLength))!.AsObject();
        var tensors = bytes[(8 + headerLength)..];
        editHeader?.Invoke(header);
        if (editMetadata is not null)
        {
            var meta = header["__metadata__"]!.AsObject();
            var hitgpu = JsonNode.Parse((string)meta["hitgpu"]!)!.AsObject();
            editMetadata(hitgpu);
            string metadata = hitgpu.ToJsonString();
            meta["hitgpu"] = metadata;
            meta["sha256"] = Convert.ToHexStringLower(SHA256.HashData([.. Encoding.UTF8.GetBytes(metadata), .. tensors]));
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        var file = new byte[8 + headerBytes.Length + tensors.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)headerBytes.Length);
        headerBytes.CopyTo(file, 8);
        tensors.CopyTo(file, 8 + headerBytes.Length);
        return file;
    }
}
