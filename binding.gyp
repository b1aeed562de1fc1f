{
  "variables": {
    "tcmu_have_rbd%": "<!(test -f /usr/include/rbd/librbd.h -a -f /usr/include/rados/librados.h && echo 1 || echo 0)",
    "tcmu_have_cluster_codec%": "<!(test -f /usr/include/zstd.h -a -f /usr/include/zlib.h && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "tcmu_native",
      "sources": [
        "native/init.cc",
        "native/errno_error.cc",
        "native/fd_watch.cc",
        "native/notify_watcher.cc",
        "native/mapping.cc",
        "native/uncounted_array_buffer.cc",
        "native/ring_completer.cc",
        "native/ring_layout_check.c",
        "native/open.cc",
        "native/open_beneath.cc",
        "native/fallocate.cc",
        "native/copy_bytes.cc",
        "native/view_bytes.cc",
        "native/io_ring.cc",
        "native/io_ring_batch.cc",
        "native/netlink.cc",
        "native/peer_cred.cc",
        "native/unix_dgram.cc",
        "native/xts.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "conditions": [
        ["tcmu_have_cluster_codec==1", {
          "sources": ["native/cluster_codec.cc"],
          "defines": ["TCMU_HAVE_CLUSTER_CODEC"],
          "libraries": ["-lzstd", "-lz"]
        }]
      ]
    }
  ],
  "conditions": [
    ["tcmu_have_rbd==1", {
      "targets": [
        {
          "target_name": "tcmu_rbd",
          "sources": ["native/rbd.cc", "native/rbd_admin.cc", "native/rbd_handles.cc", "native/rbd_queue.cc", "native/errno_error.cc", "native/view_bytes.cc"],
          "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
          "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
          "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
          "libraries": ["-lrbd", "-lrados"]
        }
      ]
    }]
  ]
}
