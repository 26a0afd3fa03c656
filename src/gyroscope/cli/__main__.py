from gyroscope.cli import main

main()
