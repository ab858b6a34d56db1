# Sourced on the GPU machine by bench/webgpu/run.sh and bench/gemma3/client-gpu.sh:
#   unpack_runtime CARRY DIR   Node (DIR/bin/node), Dawn's Node binding (DIR/webgpu) and onnxruntime-web
#                              (DIR/node_modules) from a bench:webgpu carry folder, with the Vulkan loader
#                              installed and NVIDIA's driver file named (the driver lives in /usr/local/nvidia).
unxz_to() { python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; }

unpack_runtime() {
  local c=$1 w=$2 f icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  mkdir -p "$w/bin" "$w/webgpu/dist/linux-x64"
  if [ -d /usr/local/nvidia ] && ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in "$c"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
  unxz_to "$c/node.xz" "$w/bin/node" && chmod +x "$w/bin/node"
  cp "$c/webgpu/index.js" "$c/webgpu/package.json" "$w/webgpu/"
  unxz_to "$c/webgpu/dawn.node.xz" "$w/webgpu/dist/linux-x64/dawn.node"
  cp -r "$c/node_modules" "$w/"
  for f in "$w"/node_modules/onnxruntime-web/dist/*.xz; do unxz_to "$f" "${f%.xz}" && rm "$f"; done
}
