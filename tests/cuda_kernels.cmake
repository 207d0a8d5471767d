# CUDA kernels' tests: the host test reads the .nv_fatbin section of its own executable
# with libelf, and loads the toolkit's stub libcuda (when there is one) to test the
# driver table without a GPU.
if(TARGET test_cuda_host)
  target_link_libraries(test_cuda_host PRIVATE PkgConfig::LIBELF)
  set(_stub "")
  if(NVCC_EXECUTABLE)
    get_filename_component(_cuda_root "${CUDA_BIN_DIR}" DIRECTORY)
    foreach(d lib64/stubs lib/stubs targets/x86_64-linux/lib/stubs)
      if(NOT _stub AND EXISTS "${_cuda_root}/${d}/libcuda.so")
        set(_stub "${_cuda_root}/${d}/libcuda.so")
      endif()
    endforeach()
  endif()
  target_compile_definitions(test_cuda_host PRIVATE ADG_TEST_CUDA_STUB="${_stub}")
endif()
