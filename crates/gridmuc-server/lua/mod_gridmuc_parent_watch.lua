-- Shuts this private Prosody down when the process that started it goes away, and then
-- removes its temporary directory, so a test run that is killed (even with SIGKILL)
-- leaves neither a daemon nor files behind.
-- gridmuc-server holds the write end of our stdin pipe and never writes to it:
-- stdin becoming readable therefore means end-of-file, i.e. the parent is gone.
module:set_global();

local server = require "net.server";
local lfs = require "lfs";

local cleanup_dir = module:get_option_string("gridmuc_cleanup_dir");
local watch, orphaned;

local function remove_tree(path)
	for name in lfs.dir(path) do
		if name ~= "." and name ~= ".." then
			local full = path .. "/" .. name;
			if lfs.symlinkattributes(full, "mode") == "directory" then
				remove_tree(full);
			else
				os.remove(full);
			end
		end
	end
	os.remove(path);
end

function module.load()
	watch = server.watchfd(0, function ()
		module:log("info", "Parent process gone (stdin closed); shutting down");
		watch:close();
		orphaned = true;
		-- Shutdown waits for sessions to close, which needs the async main thread.
		prosody.main_thread:run(function ()
			prosody.shutdown("gridmuc parent exited");
		end);
	end);
end

module:hook_global("server-stopped", function ()
	if orphaned and cleanup_dir then
		remove_tree(cleanup_dir);
	end
end);

function module.unload()
	if watch then
		watch:close();
	end
end
