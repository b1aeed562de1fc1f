/**
 * Imported first by the CLI entry point. File handlers run their I/O on
 * libuv's thread pool, and some configfs writes (enable, LUN links) block a
 * pool thread until the kernel hears back from us; the default 4 threads
 * would throttle queue depth 32 and could even starve those replies. libuv
 * reads this variable when the pool is first used, so it must be set before
 * any asynchronous fs call.
 */
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '64';
export {};
