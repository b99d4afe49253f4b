# WAMR platform "edgerm-baremetal": one thread, no OS, no file system (port/baremetal). Used by
# port/wamr/CMakeLists.txt with -DEDGERM_WAMR_BAREMETAL=ON for the Cortex-M4 image.
set(PLATFORM_SHARED_DIR ${CMAKE_CURRENT_LIST_DIR})

add_definitions(-DBH_PLATFORM_EDGERM_BAREMETAL)

include_directories(${PLATFORM_SHARED_DIR})
include_directories(${SHARED_DIR}/platform/include)

set(PLATFORM_SHARED_SOURCE ${PLATFORM_SHARED_DIR}/platform.c)
