import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.notification.Failure;

/** Runs the given JUnit 4 test classes and prints "N passed, M failed". */
public final class JvmTestMain {
    public static void main(String[] args) throws ClassNotFoundException {
        Class<?>[] classes = new Class<?>[args.length];
        for (int i = 0; i < args.length; i++) classes[i] = Class.forName(args[i]);
        Result result = JUnitCore.runClasses(classes);
        for (Failure f : result.getFailures()) {
            System.out.println("FAILED " + f.getTestHeader() + ": " + f.getMessage());
            System.out.println(f.getTrace());
        }
        int failed = result.getFailureCount();
        System.out.println((result.getRunCount() - failed) + " passed, " + failed + " failed"
            + " (" + classes.length + " classes, " + result.getRunTime() + " ms)");
        System.exit(failed == 0 && result.getRunCount() > 0 ? 0 : 1);
    }
}
